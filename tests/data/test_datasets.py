"""Datasets on generated trees in their real layouts; class selection; deterministic splits.

Obtaining the raw files (`make data`) is tools/fetch.py's job: tests/tools/test_fetch.py."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from gadlib.data import datasets as data
from gadlib.data.datasets import DataError, ImageSet
from tests.fixtures import DATA_DIR, TEST_OFFSET, fashion_images, snapshot, write_cub_tree, write_idx, write_jpeg

REAL_FASHION = DATA_DIR / "fashion-mnist"
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"


def grey_levels(images: torch.Tensor) -> np.ndarray:
    """The (uniform) grey level of each image, 0-255."""
    return (images.mean(dim=(1, 2, 3)) * 255).round().numpy()


# --------------------------------------------------------------------------- Fashion-MNIST
def test_fashion_mnist_reads_the_idx_files(fashion_root):
    train = data.load_fashion_mnist(fashion_root, "train")
    assert train.images.shape == (60, 1, 4, 4) and train.images.dtype == torch.float32
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == list(range(10)) * 6
    assert train.class_names == list(data.FASHION_MNIST_CLASSES)
    assert torch.equal(train.images, torch.from_numpy(fashion_images(60)[:, None] / 255.0).float())
    test = data.load_fashion_mnist(fashion_root, "test")
    expected = fashion_images(30, TEST_OFFSET)[:, None] / 255.0
    assert torch.equal(test.images, torch.from_numpy(expected).float())


def test_fashion_mnist_rejects_an_unknown_split(fashion_root):
    with pytest.raises(ValueError, match="'validation'"):
        data.load_fashion_mnist(fashion_root, "validation")


def test_fashion_mnist_missing_file_says_make_data(fashion_root):
    (fashion_root / TRAIN_LABELS).unlink()
    with pytest.raises(DataError, match=f"{TRAIN_LABELS}.*make data"):
        data.load_fashion_mnist(fashion_root, "train")


@pytest.mark.parametrize("damage", ["not gzip", "bad deflate", "cut short"])
def test_fashion_mnist_unreadable_gzip_names_the_file(fashion_root, damage):
    path = fashion_root / TRAIN_IMAGES
    raw = path.read_bytes()
    if damage == "not gzip":
        raw = b"this is not a gzip file"
    elif damage == "bad deflate":  # zlib.error, not an OSError: byte 10 starts an invalid block type
        raw = gzip.compress(bytes(range(256)) * 40, mtime=0)
        raw = raw[:10] + b"\xff" + raw[11:]
    else:
        raw = raw[: len(raw) // 2]
    path.write_bytes(raw)
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES} is not a readable gzip"):
        data.load_fashion_mnist(fashion_root, "train")
    with pytest.raises(DataError, match=TRAIN_IMAGES):
        data.verify_fashion_mnist(fashion_root)


def test_fashion_mnist_labels_file_in_place_of_images_is_refused(fashion_root):
    write_idx(fashion_root / TRAIN_IMAGES, np.zeros(60, np.uint8))  # 1-d: a labels file
    with pytest.raises(DataError, match=f"{TRAIN_IMAGES} is not an idx file of 3 dimension"):
        data.load_fashion_mnist(fashion_root, "train")


def test_fashion_mnist_truncated_data_is_refused(fashion_root):
    with gzip.open(fashion_root / TRAIN_IMAGES, "rb") as fh:
        raw = fh.read()
    with gzip.open(fashion_root / TRAIN_IMAGES, "wb") as fh:
        fh.write(raw[:-5])
    with pytest.raises(DataError, match="header says shape"):
        data.load_fashion_mnist(fashion_root, "train")


def test_fashion_mnist_image_and_label_counts_must_agree(fashion_root):
    write_idx(fashion_root / TRAIN_LABELS, np.zeros(59, np.uint8))
    with pytest.raises(DataError, match="60 images but 59 labels"):
        data.load_fashion_mnist(fashion_root, "train")


def test_fashion_mnist_label_out_of_range_is_refused(fashion_root):
    write_idx(fashion_root / TRAIN_LABELS, np.full(60, 10, np.uint8))
    with pytest.raises(DataError, match="label 10"):
        data.load_fashion_mnist(fashion_root, "train")


def test_verify_refuses_content_other_than_the_published_files(fashion_root):
    with pytest.raises(DataError, match="differs from the published Fashion-MNIST"):
        data.verify_fashion_mnist(fashion_root)
    with pytest.raises(DataError, match="missing raw file"):
        data.verify_fashion_mnist(fashion_root / "nowhere")


@pytest.mark.skipif(not (REAL_FASHION / TRAIN_IMAGES).is_file(), reason="data/fashion-mnist not obtained")
def test_real_fashion_mnist_verifies_and_loads_untouched():
    before = snapshot(REAL_FASHION)
    data.verify_fashion_mnist(REAL_FASHION)
    test = data.load_fashion_mnist(REAL_FASHION, "test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert 0 <= test.images.min() and test.images.max() <= 1
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert snapshot(REAL_FASHION) == before


# --------------------------------------------------------------------------- Dogs vs. Cats
def test_dogs_vs_cats_reads_the_kaggle_folder(dogs_root):
    pets = data.load_dogs_vs_cats(dogs_root, image_size=6)
    assert pets.images.shape == (8, 3, 6, 6) and pets.images.dtype == torch.float32
    assert pets.class_names == ["cat", "dog"]
    assert pets.labels.tolist() == [0] * 4 + [1] * 4
    assert np.allclose(grey_levels(pets.images), [10, 20, 30, 40, 130, 140, 150, 160], atol=3)


def test_dogs_vs_cats_takes_the_first_files_in_numeric_order(dogs_root):
    for n in (10, 11):  # cat.10 sorts before cat.2 as text, not as a number
        write_jpeg(dogs_root / f"cat.{n}.jpg", 250)
    (dogs_root / "notes.txt").write_text("ignored")
    pets = data.load_dogs_vs_cats(dogs_root, image_size=8, max_per_class=3)
    assert np.allclose(grey_levels(pets.images), [10, 20, 30, 130, 140, 150], atol=3)


def test_dogs_vs_cats_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist.*cat.0.jpg"):
        data.load_dogs_vs_cats(tmp_path / "nowhere", 8)


def test_dogs_vs_cats_wrong_layout_points_at_the_train_folder(tmp_path):
    (tmp_path / "kaggle" / "train").mkdir(parents=True)
    write_jpeg(tmp_path / "kaggle" / "train" / "cat.0.jpg", 10)
    with pytest.raises(DataError, match="no cat.<n>.jpg image.*train"):
        data.load_dogs_vs_cats(tmp_path / "kaggle", 8)


def test_dogs_vs_cats_class_without_images(dogs_root):
    for path in dogs_root.glob("dog.*"):
        path.unlink()
    with pytest.raises(DataError, match="no dog.<n>.jpg"):
        data.load_dogs_vs_cats(dogs_root, 8)


def test_dogs_vs_cats_corrupt_image_names_the_file(dogs_root):
    (dogs_root / "dog.2.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*dog\.2\.jpg"):
        data.load_dogs_vs_cats(dogs_root, 8)


def test_truncated_jpeg_names_the_file(dogs_root):
    path = dogs_root / "cat.1.jpg"
    write_jpeg(path, 50, size=64)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match=r"cat\.1\.jpg"):
        data.load_dogs_vs_cats(dogs_root, 8)


# --------------------------------------------------------------------------- CUB-200-2011
SPARROWS = {"name": "sparrow", "ids": [113, 114]}
WARBLERS = {"name": "warbler", "ids": [158, 159]}


def test_cub_groups_merge_id_ranges_and_keep_cubs_split(cub_root):
    birds = data.load_cub200(cub_root, [SPARROWS, WARBLERS], image_size=5, split="train")
    assert birds.class_names == ["sparrow", "warbler"]
    assert birds.images.shape == (8, 3, 5, 5)
    assert birds.labels.tolist() == [0] * 4 + [1] * 4
    assert np.allclose(grey_levels(birds.images), [113, 113, 114, 114, 158, 158, 159, 159], atol=2)
    test = data.load_cub200(cub_root, [WARBLERS, SPARROWS], image_size=5, split="test")
    assert test.class_names == ["warbler", "sparrow"] and len(test) == 8


def test_cub_selects_by_id_by_full_name_and_by_short_name(cub_root):
    birds = data.load_cub200(cub_root, [158, "113.Baird_Sparrow", "Black_throated_Sparrow"], 4, "test", max_per_class=1)
    assert birds.class_names == ["158.Bay_breasted_Warbler", "113.Baird_Sparrow", "Black_throated_Sparrow"]
    assert birds.labels.tolist() == [0, 1, 2]
    assert np.allclose(grey_levels(birds.images), [158, 113, 114], atol=2)


def test_cub_paper_ranges_accept_classes_without_images(cub_root):
    birds = data.load_cub200(
        cub_root, [{"name": "sparrow", "ids": [113, 133]}, {"name": "warbler", "ids": [158, 178]}], 4, "train"
    )
    assert torch.bincount(birds.labels).tolist() == [4, 4]


def test_cub_all_needs_every_class_to_have_images(cub_root):
    with pytest.raises(DataError, match="001.Bird_001.*no image"):
        data.load_cub200(cub_root, "all", 4, "train")
    small = write_cub_tree(cub_root.parent / "small", class_ids=(1, 2))
    (small / "classes.txt").write_text("1 001.A\n2 002.B\n")
    assert data.load_cub200(small, "all", 4, "train").class_names == ["001.A", "002.B"]


@pytest.mark.parametrize(
    "classes, message",
    [
        ([113, 201], "unknown CUB class id 201; ids run from 1 to 200"),
        ([113, "Dodo"], "unknown CUB class 'Dodo'"),
        ([SPARROWS, {"name": "x", "ids": [190, 205]}], r"class ids \[201, 202, 203, 204, 205\] of group 'x'"),
        ([SPARROWS, {"name": "x", "ids": [160]}], "must be {name: <label>, ids: \\[first, last\\]}"),
        ([SPARROWS, {"name": "x", "ids": [170, 160]}], "first <= last"),
        ([SPARROWS, 114], "overlaps another selected class"),
        ([113], "at least two CUB classes"),
        ([113, 2.5], "must be a name, an id or"),
    ],
)
def test_cub_bad_selection(cub_root, classes, message):
    with pytest.raises(DataError, match=message):
        data.load_cub200(cub_root, classes, 4, "train")


def test_cub_class_without_images(cub_root):
    with pytest.raises(DataError, match="'115.Brewer_Sparrow' has no image in CUB's train split"):
        data.load_cub200(cub_root, [113, 115], 4, "train")


def test_cub_wrong_layout(cub_root, tmp_path):
    with pytest.raises(DataError, match="is not a CUB-200-2011 folder"):
        data.load_cub200(tmp_path / "nowhere", [113, 114], 4, "train")
    (cub_root / "train_test_split.txt").unlink()
    with pytest.raises(DataError, match="missing: train_test_split.txt"):
        data.load_cub200(cub_root, [113, 114], 4, "train")


def test_cub_rejects_an_unknown_split(cub_root):
    with pytest.raises(ValueError, match="'val'"):
        data.load_cub200(cub_root, [113, 114], 4, "val")


def test_cub_malformed_metadata_names_file_and_line(cub_root):
    path = cub_root / "image_class_labels.txt"
    path.write_text(path.read_text().replace("2 113", "2 sparrow", 1))
    with pytest.raises(DataError, match=r"image_class_labels.txt, line 2"):
        data.load_cub200(cub_root, [113, 114], 4, "train")


def test_cub_metadata_files_must_list_the_same_images(cub_root):
    path = cub_root / "train_test_split.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DataError, match="list different image ids"):
        data.load_cub200(cub_root, [113, 114], 4, "train")


def test_cub_missing_image_is_named_before_decoding(cub_root):
    (cub_root / "images" / "113.Baird_Sparrow" / "Baird_Sparrow_0000.jpg").write_bytes(b"corrupt")
    (cub_root / "images" / "114.Black_throated_Sparrow" / "Black_throated_Sparrow_0002.jpg").unlink()
    # The corrupt file comes first, so a "missing" error shows the check ran before any decoding.
    with pytest.raises(DataError, match="do not exist, e.g. .*Black_throated_Sparrow_0002.jpg"):
        data.load_cub200(cub_root, [113, 114], 4, "train")


def test_cub_corrupt_image_names_the_file(cub_root):
    bad = next((cub_root / "images" / "158.Bay_breasted_Warbler").glob("*.jpg"))
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"cannot read image .*{bad.name}"):
        data.load_cub200(cub_root, [113, 158], 4, "train")


def test_loaders_leave_the_files_untouched(fashion_root, dogs_root, cub_root):
    root = fashion_root.parent
    before = snapshot(root)
    data.load_fashion_mnist(fashion_root, "train")
    with pytest.raises(DataError):
        data.verify_fashion_mnist(fashion_root)
    data.load_dogs_vs_cats(dogs_root, 8)
    data.load_cub200(cub_root, [SPARROWS, WARBLERS], 8, "test")
    assert snapshot(root) == before


# --------------------------------------------------------------------------- selection
def toy_set(counts=(3, 4, 5), names=("a", "b", "c")) -> ImageSet:
    """``counts[k]`` images of class k in a shuffled order; each 1-pixel image holds its own index."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    images = torch.arange(len(labels), dtype=torch.float32).reshape(-1, 1, 1, 1)
    return ImageSet(images, labels, list(names))


def test_select_a_pair_relabels_in_the_given_order():
    full = toy_set()
    pair = data.select_classes(full, ["c", "a"])
    assert pair.class_names == ["c", "a"]
    kept = pair.images.flatten().long()
    assert torch.equal(full.labels[kept], torch.where(pair.labels == 0, 2, 0))
    assert torch.bincount(pair.labels).tolist() == [5, 3]


def test_select_a_list_by_ids_and_all():
    full = toy_set()
    three = data.select_classes(full, [1, 2, 0])
    assert three.class_names == ["b", "c", "a"] and len(three) == 12
    assert torch.bincount(three.labels).tolist() == [4, 5, 3]
    assert data.select_classes(full, "all") is full


@pytest.mark.parametrize(
    "classes, message",
    [
        (["a", "z"], "unknown class 'z'; this dataset has \\['a', 'b', 'c'\\]"),
        ([0, 3], "unknown class id 3; ids run from 0 to 2"),
        ([0, True], "unknown class id True"),
        (["a", 0], "name the same class twice"),
        (["a"], "at least two classes"),
        ("a", "at least two classes"),
    ],
)
def test_select_bad_classes(classes, message):
    with pytest.raises(DataError, match=message):
        data.select_classes(toy_set(), classes)


def test_select_a_class_with_no_image():
    with pytest.raises(DataError, match="class 'b' has no image"):
        data.select_classes(toy_set(counts=(3, 0, 2)), ["a", "b"])


# --------------------------------------------------------------------------- splits
def test_split_is_a_stratified_partition():
    labels = toy_set(counts=(10, 20, 30)).labels
    train, val = data.stratified_split(labels, [0.8, 0.2], seed=0)
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(60))
    assert torch.bincount(labels[val]).tolist() == [2, 4, 6]
    assert torch.equal(train, torch.sort(train).values)


def test_split_is_deterministic_under_the_seed():
    labels = toy_set(counts=(10, 20, 30)).labels
    first = data.stratified_split(labels, [0.7, 0.3], seed=3)
    again = data.stratified_split(labels, [0.7, 0.3], seed=3)
    other = data.stratified_split(labels, [0.7, 0.3], seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])


def test_split_with_fractions_below_one_leaves_the_rest_out():
    labels = torch.zeros(10, dtype=torch.int64)
    parts = data.stratified_split(labels, [0.5, 0.2], seed=0)
    assert [len(p) for p in parts] == [5, 2]
    assert not set(parts[0].tolist()) & set(parts[1].tolist())


def test_split_gives_every_part_at_least_one_image():
    labels = torch.tensor([0, 0, 0, 1, 1])
    train, val = data.stratified_split(labels, [0.9, 0.1], seed=0)  # round(0.9 * 3) = 3 would leave none
    assert torch.bincount(labels[val]).tolist() == [1, 1]
    assert torch.bincount(labels[train]).tolist() == [2, 1]
    parts = data.stratified_split(torch.zeros(3, dtype=torch.int64), [0.4, 0.4, 0.2], seed=0)
    assert [len(p) for p in parts] == [1, 1, 1]


def test_split_refuses_a_class_too_small_to_split():
    with pytest.raises(DataError, match="class 1 has 1 image"):
        data.stratified_split(torch.tensor([0, 0, 0, 1]), [0.5, 0.5], seed=0)
    with pytest.raises(DataError, match="empty"):
        data.stratified_split(torch.tensor([], dtype=torch.int64), [0.5, 0.5], seed=0)


@pytest.mark.parametrize("fractions", [[], [0.5, 0.0], [0.7, 0.7], [float("nan"), 0.5]])
def test_split_refuses_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions must be positive"):
        data.stratified_split(torch.tensor([0, 0, 1, 1]), fractions, seed=0)


def test_subsample_per_class():
    labels = toy_set(counts=(3, 8, 5)).labels
    chosen = data.subsample_per_class(labels, 4, seed=0)
    assert torch.bincount(labels[chosen]).tolist() == [3, 4, 4]
    assert torch.equal(chosen, data.subsample_per_class(labels, 4, seed=0))
    assert not torch.equal(chosen, data.subsample_per_class(labels, 4, seed=1))
    assert torch.equal(data.subsample_per_class(labels, None, seed=0), torch.arange(16))
    with pytest.raises(ValueError, match="max_per_class must be at least 1"):
        data.subsample_per_class(labels, 0, seed=0)


def test_channel_mean_std_known_answer():
    images = torch.stack([torch.zeros(2, 2, 2), torch.ones(2, 2, 2)])  # (2, 2, 2, 2)
    images[:, 1] = 0.5
    mean, std = data.channel_mean_std(images)
    assert mean == pytest.approx([0.5, 0.5])
    assert std[0] == pytest.approx(torch.tensor([0.0] * 4 + [1.0] * 4).std().item())
    assert std[1] == pytest.approx(1e-6)  # a constant channel: never a division by zero
    with pytest.raises(ValueError, match="non-empty"):
        data.channel_mean_std(torch.zeros(0, 1, 2, 2))
