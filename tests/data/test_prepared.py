"""prepare_experiment on generated trees: selection, splits, sizes, determinism; raw files untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gadlib.data import datasets as data
from gadlib.data.datasets import DataError
from gadlib.data.prepared import PreparedData, load_prepared, prepare_experiment, save_prepared
from gadlib.project.params import resolve_path
from tests.fixtures import DATA_DIR, ROOT, TEST_OFFSET, snapshot

REAL_FASHION = DATA_DIR / "fashion-mnist"


def experiment(root, dataset="fashion_mnist", classes=("Shirt", "T-shirt/top"), image_size=16) -> dict:
    return {
        "dataset": dataset,
        "data_dir": str(root),
        "classes": list(classes),
        "architecture": "resnet18",
        "image_size": image_size,
        "strategy": "pair",
    }


def prepare(data: dict, exp: dict, seed: int) -> PreparedData:
    """prepare_experiment with the keys of params.yaml's ``data`` section and one experiment, as
    notebooks/01_prepare.ipynb calls it (a relative data_dir: in this repository, whatever the
    working directory)."""
    return prepare_experiment(
        exp["dataset"],
        resolve_path(exp["data_dir"], root=ROOT),
        exp["classes"],
        exp["image_size"],
        seed=seed,
        max_train_per_class=data["max_train_per_class"],
        max_test_per_class=data["max_test_per_class"],
        val_fraction=data["val_fraction"],
        test_fraction=data["test_fraction"],
    )


def levels(images: torch.Tensor) -> list[int]:
    """Grey level (0-255) of each uniform image."""
    return (images.mean(dim=(1, 2, 3)) * 255).round().long().tolist()


@pytest.fixture
def unverified(monkeypatch):
    """The generated Fashion-MNIST is not the published one; skip the content check it would fail."""
    monkeypatch.setattr(data, "verify_fashion_mnist", lambda root: None)


def test_fashion_mnist_pair(params, fashion_root, unverified):
    prepared = prepare(params["data"], experiment(fashion_root), seed=0)
    assert prepared.class_names == ["Shirt", "T-shirt/top"]
    assert prepared.in_channels == 1
    for split, per_class in (("train", 5), ("val", 1), ("test", 3)):
        part = getattr(prepared, split)
        assert part.images.shape[1:] == (1, 16, 16)  # resized from 4 x 4
        assert torch.bincount(part.labels).tolist() == [per_class, per_class]
    # Grey level i is training image i, whose class is i % 10: Shirt is 6, T-shirt/top 0.
    train_val = levels(prepared.train.images) + levels(prepared.val.images)
    labels = prepared.train.labels.tolist() + prepared.val.labels.tolist()
    for level, y in zip(train_val, labels, strict=True):
        assert level < TEST_OFFSET and level % 10 == (6 if y == 0 else 0)
    assert len(set(train_val)) == 12  # train and val are disjoint and use every training image
    assert all(level >= TEST_OFFSET for level in levels(prepared.test.images))
    assert prepared.std[0] > 0 and 0 < prepared.mean[0] < 1


def test_fashion_mnist_list_and_budget(params, fashion_root, unverified):
    params["data"].update(max_train_per_class=4, max_test_per_class=2)
    exp = experiment(fashion_root, classes=["Coat", 2, "Bag"])
    prepared = prepare(params["data"], exp, seed=0)
    assert prepared.class_names == ["Coat", "Pullover", "Bag"]
    assert torch.bincount(prepared.train.labels).tolist() == [3, 3, 3]
    assert torch.bincount(prepared.val.labels).tolist() == [1, 1, 1]
    assert torch.bincount(prepared.test.labels).tolist() == [2, 2, 2]


def test_splits_are_deterministic_under_the_seed(params, fashion_root, unverified):
    exp = experiment(fashion_root)
    first, again = (prepare(params["data"], exp, seed=7) for _ in range(2))
    other = prepare(params["data"], exp, seed=8)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(first, split).images, getattr(again, split).images)
    assert levels(first.val.images) != levels(other.val.images)


def test_fashion_mnist_content_is_verified(params, fashion_root):
    with pytest.raises(DataError, match="differs from the published Fashion-MNIST"):
        prepare(params["data"], experiment(fashion_root), seed=0)


def test_dogs_vs_cats_holds_out_a_test_part(params, dogs_root):
    exp = experiment(dogs_root, "dogs_vs_cats", ["dog", "cat"])
    prepared = prepare(params["data"], exp, seed=0)
    assert prepared.class_names == ["dog", "cat"] and prepared.in_channels == 3
    assert prepared.train.images.shape[1:] == (3, 16, 16)
    sizes = {s: torch.bincount(getattr(prepared, s).labels).tolist() for s in ("train", "val", "test")}
    assert sizes == {"train": [2, 2], "val": [1, 1], "test": [1, 1]}  # 4 each: 20% test, then 10% val
    everything = torch.cat([prepared.train.images, prepared.val.images, prepared.test.images])
    labels = torch.cat([prepared.train.labels, prepared.val.labels, prepared.test.labels])
    assert sorted(levels(everything)) == pytest.approx([10, 20, 30, 40, 130, 140, 150, 160], abs=3)
    for level, y in zip(levels(everything), labels.tolist(), strict=True):
        assert (level >= 130) == (y == 0)  # dogs are bright and labelled 0, as listed first


def test_cub_groups(params, cub_root):
    groups = [{"name": "sparrow", "ids": [113, 133]}, {"name": "warbler", "ids": [158, 178]}]
    prepared = prepare(params["data"], experiment(cub_root, "cub200", groups), seed=0)
    assert prepared.class_names == ["sparrow", "warbler"]
    assert torch.bincount(prepared.train.labels).tolist() == [3, 3]
    assert torch.bincount(prepared.test.labels).tolist() == [4, 4]
    assert set(levels(prepared.test.images[prepared.test.labels == 1])) <= {158, 159, 160}


def test_prepare_leaves_the_raw_files_untouched(params, fashion_root, dogs_root, cub_root, unverified):
    before = snapshot(fashion_root.parent)
    prepare(params["data"], experiment(fashion_root), seed=0)
    prepare(params["data"], experiment(dogs_root, "dogs_vs_cats", ["cat", "dog"]), seed=0)
    prepare(params["data"], experiment(cub_root, "cub200", [113, 158]), seed=0)
    assert snapshot(fashion_root.parent) == before


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="data/fashion-mnist not obtained")
def test_real_fashion_mnist_is_read_and_left_untouched(params):
    before = snapshot(REAL_FASHION)
    params["data"].update(max_train_per_class=20, max_test_per_class=10)
    name = next(iter(params["experiments"]))
    prepared = prepare(params["data"], params["experiments"][name], params["seed"])
    assert prepared.class_names == params["experiments"][name]["classes"]
    assert len(prepared.train) + len(prepared.val) == 40 and len(prepared.test) == 20
    assert snapshot(REAL_FASHION) == before


def test_unknown_dataset_is_refused_first(params, tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mnist'; use one of"):
        prepare(params["data"], experiment(tmp_path / "nowhere", "mnist"), seed=0)


@pytest.mark.parametrize(
    "dataset, classes", [("fashion_mnist", ["Shirt", "Shirtt"]), ("dogs_vs_cats", ["cat", "wolf"])]
)
def test_unknown_class_is_refused_before_reading(params, dogs_root, monkeypatch, dataset, classes):
    def no_reading(*args, **kwargs):
        raise AssertionError("images were read before the class was checked")

    monkeypatch.setattr(data, "_read_images", no_reading)
    monkeypatch.setattr(data, "load_fashion_mnist", no_reading)
    with pytest.raises(DataError, match=f"unknown class '{classes[1]}'"):
        prepare(params["data"], experiment(dogs_root, dataset, classes), seed=0)


def test_missing_dataset_folder(params, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare(params["data"], experiment(tmp_path / "nowhere", "dogs_vs_cats", ["cat", "dog"]), seed=0)
    with pytest.raises(DataError, match="is not a CUB-200-2011 folder"):
        prepare(params["data"], experiment(tmp_path / "nowhere", "cub200", [1, 2]), seed=0)
    with pytest.raises(DataError, match="missing raw file.*make data"):
        prepare(params["data"], experiment(tmp_path / "nowhere"), seed=0)


def test_save_and_load_round_trip(params, fashion_root, unverified, tmp_path):
    prepared = prepare(params["data"], experiment(fashion_root), seed=0)
    path = tmp_path / "out" / "prepared.npz"
    save_prepared(path, prepared)
    loaded = load_prepared(path)
    assert isinstance(loaded, PreparedData) and loaded.class_names == prepared.class_names
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(loaded, split).labels, getattr(prepared, split).labels)
        assert torch.allclose(getattr(loaded, split).images, getattr(prepared, split).images, atol=0.5 / 255)
    assert loaded.mean == pytest.approx(prepared.mean) and loaded.std == pytest.approx(prepared.std)


def test_load_prepared_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the prepare stage"):
        load_prepared(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="lacks .*class_names"):
        load_prepared(tmp_path / "other.npz")
