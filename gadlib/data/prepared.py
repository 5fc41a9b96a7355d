"""An experiment's prepared train / validation / test images of the selected classes, written by the
prepare stage as uint8 (the sources are 8-bit: nothing is lost) and read back as float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gadlib.choices import DATASETS, DOGS_VS_CATS_CLASSES, FASHION_MNIST_CLASSES
from gadlib.common.atomic import load_arrays, save_arrays
from gadlib.data import datasets

SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    """Train / val / test ImageSets, and the training split's per-channel mean and std."""

    train: datasets.ImageSet
    val: datasets.ImageSet
    test: datasets.ImageSet
    mean: list[float]
    std: list[float]

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]


def prepare_experiment(
    dataset: str,
    root: str | Path,
    classes: list | str,
    image_size: int,
    *,
    seed: int,
    max_train_per_class: int | None = None,
    max_test_per_class: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> PreparedData:
    """PreparedData of (N, C, image_size, image_size) images (C = 1 for Fashion-MNIST, else 3): ``dataset``
    (one of ``DATASETS``, read from ``root``) with its ``classes`` (names, ids or CUB groups, or ``"all"``)
    selected, at most ``max_*_per_class`` images per class, ``val_fraction`` of the training images held
    out for validation and, without a test split of its own, ``test_fraction`` for the test; ``seed``
    fixes the draws. An unknown dataset or class is reported before any image is read.
    """
    if dataset not in DATASETS:
        raise datasets.DataError(f"unknown dataset {dataset!r}; use one of {list(DATASETS)}")
    known = {"fashion_mnist": FASHION_MNIST_CLASSES, "dogs_vs_cats": DOGS_VS_CATS_CLASSES}
    if dataset in known and classes != "all":
        datasets.class_indices(known[dataset], classes)  # raises before the long read
    root = Path(root)
    if dataset == "fashion_mnist":
        datasets.verify_fashion_mnist(root)
        full_train = datasets.select_classes(datasets.load_fashion_mnist(root, "train"), classes)
        test = datasets.select_classes(datasets.load_fashion_mnist(root, "test"), classes)
    elif dataset == "dogs_vs_cats":
        # No official test split: hold out test_fraction of the images read, class by class.
        caps = (max_train_per_class, max_test_per_class)
        cap = None if None in caps else sum(caps)
        pool = datasets.select_classes(datasets.load_dogs_vs_cats(root, image_size, cap), classes)
        full_train, test = _split(pool, test_fraction, seed, f"holding out a test part (data.test_fraction) of {root}")
    else:  # cub200, with its own train/test split
        full_train = datasets.load_cub200(root, classes, image_size, "train")
        test = datasets.load_cub200(root, classes, image_size, "test")
    full_train = _subset(full_train, datasets.subsample_per_class(full_train.labels, max_train_per_class, seed))
    test = _subset(test, datasets.subsample_per_class(test.labels, max_test_per_class, seed + 1))
    purpose = f"splitting the training images of {root} into train and validation (data.val_fraction)"
    train, val = _split(full_train, val_fraction, seed, purpose)
    train, val, test = (_resize(s, image_size) for s in (train, val, test))
    mean, std = datasets.channel_mean_std(train.images)
    return PreparedData(train, val, test, mean, std)


def save_prepared(path: str | Path, prepared: PreparedData) -> None:
    """Write the prepared splits to one ``.npz`` (uint8 images; no pickle)."""
    arrays = {"class_names": np.array(prepared.class_names), "mean": np.array(prepared.mean, np.float32)}
    arrays["std"] = np.array(prepared.std, np.float32)
    for split in SPLITS:
        part: datasets.ImageSet = getattr(prepared, split)
        arrays[f"{split}_images"] = (part.images * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        arrays[f"{split}_labels"] = part.labels.numpy()
    save_arrays(path, **arrays)


def load_prepared(path: str | Path) -> PreparedData:
    """Read what :func:`save_prepared` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"prepared data {path} does not exist; run the prepare stage (`dvc repro prepare`) first"
        )
    arrays = load_arrays(path)
    expected = {"class_names", "mean", "std"} | {f"{s}_{k}" for s in SPLITS for k in ("images", "labels")}
    if not expected <= set(arrays):
        raise ValueError(
            f"{path} lacks {sorted(expected - set(arrays))}, so save_prepared did not write it; "
            f"run the prepare stage again (`dvc repro -f prepare`)"
        )
    names, parts = [str(n) for n in arrays["class_names"]], {}
    for split in SPLITS:
        images = torch.from_numpy(arrays[f"{split}_images"]).float().div_(255.0)
        parts[split] = datasets.ImageSet(images, torch.from_numpy(arrays[f"{split}_labels"]).long(), names)
    return PreparedData(**parts, mean=arrays["mean"].tolist(), std=arrays["std"].tolist())


def _subset(data: datasets.ImageSet, index: torch.Tensor) -> datasets.ImageSet:
    return datasets.ImageSet(data.images[index], data.labels[index], data.class_names)


def _split(data: datasets.ImageSet, held_out: float, seed: int, purpose: str) -> list[datasets.ImageSet]:
    """``data`` split class by class into the kept (1 - held_out) and the held-out part."""
    parts = datasets.stratified_split(data.labels, [1 - held_out, held_out], seed, data.class_names, purpose=purpose)
    return [_subset(data, index) for index in parts]


def _resize(data: datasets.ImageSet, size: int) -> datasets.ImageSet:
    if data.images.shape[-2:] == (size, size):
        return data
    images = F.interpolate(data.images, size=(size, size), mode="bilinear", align_corners=False)
    return datasets.ImageSet(images.clamp(0, 1), data.labels, data.class_names)
