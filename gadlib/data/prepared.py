"""An experiment's prepared data: train / validation / test images of the selected classes.

Written once by the prepare stage and read by every later stage. Images are stored as uint8 (the
sources are 8-bit, so nothing is lost) and returned as float32 in [0, 1].
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
    """Images (N, C, H, W) float32 in [0, 1] and int64 labels for each split, with class names and
    the per-channel mean and std that the models normalise with (computed on the training split)."""

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
    """Load a dataset, select its classes, subsample, split it and resize it.

    Parameters
    ----------
    dataset : one of ``gadlib.choices.DATASETS``.
    root : the dataset's folder.
    classes : class names, ids or CUB ``{name, ids}`` groups (at least two), or ``"all"``.
    image_size : side of the square images returned.
    seed : makes the subsampling and the splits deterministic.
    max_train_per_class, max_test_per_class : cap of images per class (``None``: all).
    val_fraction : share of the training images held out for early stopping.
    test_fraction : share held out as the test split, for datasets without their own.

    Returns
    -------
    PreparedData whose images are (N, C, image_size, image_size); C is 1 for Fashion-MNIST, else 3.
    An unknown dataset or class is reported before any image is read. Raw files are only read.
    """
    name, size, max_train, max_test = dataset, image_size, max_train_per_class, max_test_per_class
    if name not in DATASETS:
        raise datasets.DataError(f"unknown dataset {name!r}; use one of {list(DATASETS)}")
    known = {"fashion_mnist": FASHION_MNIST_CLASSES, "dogs_vs_cats": DOGS_VS_CATS_CLASSES}
    if name in known and classes != "all":
        datasets.class_indices(known[name], classes)  # raises before the long read
    root = Path(root)
    if name == "fashion_mnist":
        datasets.verify_fashion_mnist(root)
        full_train = datasets.select_classes(datasets.load_fashion_mnist(root, "train"), classes)
        test = datasets.select_classes(datasets.load_fashion_mnist(root, "test"), classes)
    elif name == "dogs_vs_cats":
        # No official test split: hold out test_fraction of the images read, class by class.
        cap = None if max_train is None or max_test is None else max_train + max_test
        pool = datasets.select_classes(datasets.load_dogs_vs_cats(root, size, cap), classes)
        train_idx, test_idx = datasets.stratified_split(
            pool.labels,
            [1 - test_fraction, test_fraction],
            seed,
            pool.class_names,
            purpose=f"holding out a test part (data.test_fraction) of {root}",
        )
        full_train, test = _subset(pool, train_idx), _subset(pool, test_idx)
    else:  # cub200, with its own train/test split
        full_train = datasets.load_cub200(root, classes, size, "train")
        test = datasets.load_cub200(root, classes, size, "test")
    full_train = _subset(full_train, datasets.subsample_per_class(full_train.labels, max_train, seed))
    test = _subset(test, datasets.subsample_per_class(test.labels, max_test, seed + 1))
    train_idx, val_idx = datasets.stratified_split(
        full_train.labels,
        [1 - val_fraction, val_fraction],
        seed,
        full_train.class_names,
        purpose=f"splitting the training images of {root} into train and validation (data.val_fraction)",
    )
    train, val = _subset(full_train, train_idx), _subset(full_train, val_idx)
    train, val, test = (_resize(s, size) for s in (train, val, test))
    mean, std = datasets.channel_mean_std(train.images)
    return PreparedData(train, val, test, mean, std)


def save_prepared(path: str | Path, prepared: PreparedData) -> None:
    """Write the prepared splits to one ``.npz`` (uint8 images; no pickle)."""
    arrays = {
        "class_names": np.array(prepared.class_names),
        "mean": np.array(prepared.mean, np.float32),
        "std": np.array(prepared.std, np.float32),
    }
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
    names = [str(n) for n in arrays["class_names"]]
    parts = {
        split: datasets.ImageSet(
            torch.from_numpy(arrays[f"{split}_images"]).float().div_(255.0),
            torch.from_numpy(arrays[f"{split}_labels"]).long(),
            names,
        )
        for split in SPLITS
    }
    return PreparedData(**parts, mean=arrays["mean"].tolist(), std=arrays["std"].tolist())


def _subset(data: datasets.ImageSet, index: torch.Tensor) -> datasets.ImageSet:
    return datasets.ImageSet(data.images[index], data.labels[index], data.class_names)


def _resize(data: datasets.ImageSet, size: int) -> datasets.ImageSet:
    if data.images.shape[-1] == size and data.images.shape[-2] == size:
        return data
    images = F.interpolate(data.images, size=(size, size), mode="bilinear", align_corners=False)
    return datasets.ImageSet(images.clamp(0, 1), data.labels, data.class_names)
