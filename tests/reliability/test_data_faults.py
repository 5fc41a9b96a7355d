"""A missing dataset, a wrong layout, a corrupt file or a class too small to split stops the prepare
stage with an error that names the file or the class, and leaves no prepared data behind.

Through what notebooks/01_prepare.ipynb runs (prepare_experiment with the experiment's params, then
save_prepared) with params whose experiment points at a generated broken tree, in an empty project,
and once through the real stage command, notebook and all, in a temporary copy of the repository.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

from gadlib.data.datasets import DataError
from gadlib.data.prepared import PreparedData, prepare_experiment, save_prepared
from gadlib.project.params import Params, read_yaml, resolve_path, validate_params
from gadlib.project.paths import ExperimentPaths
from tests.fixtures import (
    DATA_DIR,
    copy_repository,
    repository_env,
    write_cub_tree,
    write_dogs_vs_cats_tree,
)

REAL_FASHION = DATA_DIR / "fashion-mnist"
needs_fashion = pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="Fashion-MNIST not obtained (make data)")


@pytest.fixture
def outputs(project_dir):
    """The stage writes into an empty project (tmp_path) instead of the repository."""
    return project_dir


def prepare_stage(params: Params, name: str) -> PreparedData:
    """What notebooks/01_prepare.ipynb runs: select, split and resize, then save prepared.npz."""
    setting, data = params.experiments[name], params.data
    prepared = prepare_experiment(
        setting.dataset,
        resolve_path(setting.data_dir),
        setting.classes,
        setting.image_size,
        seed=params.seed,
        max_train_per_class=data.max_train_per_class,
        max_test_per_class=data.max_test_per_class,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
    )
    save_prepared(ExperimentPaths(name).prepared, prepared)
    return prepared


def written(project) -> list:
    """Every file in the project besides its params.yaml and dvc.yaml."""
    return [p for p in project.rglob("*") if p.is_file() and p.parent != project]


def prepare(params: dict, outputs, dataset: str, data_dir, classes) -> None:
    params["experiments"] = {
        "broken": {
            "dataset": dataset,
            "data_dir": str(data_dir),
            "classes": classes,
            "architecture": "small_cnn",
            "image_size": 16,
            "strategy": "pair",
        }
    }
    try:
        prepare_stage(validate_params(params), "broken")
    finally:
        assert written(outputs) == [], f"a failed prepare stage left {written(outputs)}"


def copy_real_fashion(dest):
    shutil.copytree(REAL_FASHION, dest)
    return dest


FASHION_PAIR = ["T-shirt/top", "Shirt"]


# ------------------------------------------------------------------ missing dataset
@pytest.mark.parametrize(
    ("dataset", "classes", "message"),
    [
        ("fashion_mnist", FASHION_PAIR, r"missing raw file .*nowhere/train-images-idx3-ubyte\.gz; run `make da"),
        ("dogs_vs_cats", ["cat", "dog"], r"Dogs vs\. Cats folder .*nowhere does not exist"),
        ("cub200", [113, 158], r".*nowhere is not a CUB-200-2011 folder: it needs images\.txt"),
    ],
)
def test_missing_dataset_names_the_folder(params, outputs, tmp_path, dataset, classes, message):
    with pytest.raises(DataError, match=message):
        prepare(params, outputs, dataset, tmp_path / "nowhere", classes)


# ------------------------------------------------------------------ wrong layout
@needs_fashion
def test_fashion_mnist_one_folder_too_high_points_at_the_subfolder(params, outputs, tmp_path):
    copy_real_fashion(tmp_path / "data" / "fashion-mnist")
    with pytest.raises(
        DataError,
        match=r"missing raw file .*data/train-images-idx3-ubyte\.gz; "
        r".*data/fashion-mnist holds it: point the experiment's data_dir",
    ):
        prepare(params, outputs, "fashion_mnist", tmp_path / "data", FASHION_PAIR)


@needs_fashion
def test_fashion_mnist_unpacked_files_are_named(params, outputs, tmp_path):
    root = copy_real_fashion(tmp_path / "fashion-mnist")
    with gzip.open(root / "train-images-idx3-ubyte.gz") as fh:
        (root / "train-images-idx3-ubyte").write_bytes(fh.read())
    (root / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is there uncompressed"):
        prepare(params, outputs, "fashion_mnist", root, FASHION_PAIR)


def test_dogs_vs_cats_kaggle_subfolder_is_pointed_at(params, outputs, tmp_path):
    write_dogs_vs_cats_tree(tmp_path / "dogs-vs-cats" / "train")
    with pytest.raises(
        DataError,
        match=r"holds no cat\.<n>\.jpg image.*its subfolder .*dogs-vs-cats/train "
        r"looks like Kaggle's, point data_dir there",
    ):
        prepare(params, outputs, "dogs_vs_cats", tmp_path / "dogs-vs-cats", ["cat", "dog"])


def test_cub_without_its_metadata_names_what_is_missing(params, outputs, tmp_path):
    root = write_cub_tree(tmp_path / "CUB_200_2011")
    (root / "train_test_split.txt").unlink()
    with pytest.raises(DataError, match=r"is not a CUB-200-2011 folder.*\(missing: train_test_split\.txt\)"):
        prepare(params, outputs, "cub200", root, [113, 158])


# ------------------------------------------------------------------ corrupt files
@needs_fashion
def test_truncated_fashion_mnist_file_is_named(params, outputs, tmp_path):
    root = copy_real_fashion(tmp_path / "fashion-mnist")
    path = root / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"raw file .*t10k-images-idx3-ubyte\.gz is not a readable gzip file"):
        prepare(params, outputs, "fashion_mnist", root, FASHION_PAIR)


def test_corrupt_jpeg_is_named(params, outputs, tmp_path):
    root = write_dogs_vs_cats_tree(tmp_path / "dogs-vs-cats", per_class=6)
    (root / "dog.3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*dog\.3\.jpg .*replace or delete the file"):
        prepare(params, outputs, "dogs_vs_cats", root, ["cat", "dog"])


def test_truncated_cub_image_is_named(params, outputs, tmp_path):
    root = write_cub_tree(tmp_path / "CUB_200_2011", class_ids=(113, 158), per_class=6)
    image = sorted((root / "images").rglob("*.jpg"))[0]
    image.write_bytes(image.read_bytes()[:40])
    with pytest.raises(DataError, match=rf"cannot read image .*{image.name}"):
        prepare(params, outputs, "cub200", root, [113, 158])


# ------------------------------------------------------------------ a class too small for the split
def test_class_too_small_for_the_test_split_is_named(params, outputs, tmp_path):
    root = write_dogs_vs_cats_tree(tmp_path / "dogs-vs-cats", per_class=6)
    for n in range(1, 6):
        (root / f"cat.{n}.jpg").unlink()
    with pytest.raises(
        DataError,
        match=r"class 'cat' has 1 image\(s\); holding out a test part \(data."
        r"test_fraction\) of .*dogs-vs-cats into 2 parts needs at least 2",
    ):
        prepare(params, outputs, "dogs_vs_cats", root, ["cat", "dog"])


def test_class_too_small_for_the_validation_split_is_named(params, outputs, tmp_path):
    # CUB's own split: even image numbers are training images, so 1 per class of the 2 written
    root = write_cub_tree(tmp_path / "CUB_200_2011", class_ids=(113, 158), per_class=2)
    with pytest.raises(
        DataError,
        match=r"class '113.Baird_Sparrow' has 1 image\(s\); splitting the training "
        r"images of .* into train and validation \(data.val_fraction\)",
    ):
        prepare(params, outputs, "cub200", root, [113, 158])


def test_a_sound_tree_prepares(params, outputs, tmp_path):
    """The control: the same generated tree, unbroken, gives prepared data."""
    root = write_dogs_vs_cats_tree(tmp_path / "dogs-vs-cats", per_class=6)
    params["experiments"] = {
        "sound": {
            "dataset": "dogs_vs_cats",
            "data_dir": str(root),
            "classes": ["cat", "dog"],
            "architecture": "small_cnn",
            "image_size": 16,
            "strategy": "pair",
        }
    }
    prepared = prepare_stage(validate_params(params), "sound")
    assert prepared.class_names == ["cat", "dog"]
    assert written(outputs) == [outputs / "artifacts" / "sound" / "prepared.npz"]


# ------------------------------------------------------------------ through the real stage command
@pytest.mark.pipeline  # starts a Jupyter kernel: about 10 s
def test_prepare_stage_reports_a_corrupt_image(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    root = write_dogs_vs_cats_tree(repo / "data" / "dogs-vs-cats", per_class=6)
    (root / "cat.2.jpg").write_bytes(b"garbage")
    params = read_yaml((repo / "params.yaml").read_text())
    params["experiments"] = {
        "broken": {
            "dataset": "dogs_vs_cats",
            "data_dir": "data/dogs-vs-cats",
            "classes": ["cat", "dog"],
            "architecture": "small_cnn",
            "image_size": 16,
            "strategy": "pair",
        }
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = repo / "reports" / "notebooks" / "broken" / "01_prepare.ipynb"
    env = repository_env(repo)
    env.pop("DVC_ROOT", None)  # the project is the working directory, as in a dvc stage
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.run_notebook",
            "notebooks/01_prepare.ipynb",
            str(output),
            "-p",
            "experiment",
            "broken",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-2:]
    assert re.fullmatch(
        r"error: notebooks/01_prepare.ipynb failed in cell \d+: DataError: cannot read image "
        r".*/cat\.2\.jpg .*; replace or delete the file",
        last[0],
    ), result.stderr[-3000:]
    assert last[1] == f"The executed part, with the traceback, is in {output}"
    errors = [
        out
        for cell in nbformat.read(output, as_version=4).cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert [e.ename for e in errors] == ["DataError"] and "cat.2.jpg" in errors[0].evalue
    assert list(output.parent.iterdir()) == [output]  # the partial notebook alone, under its own name
    assert [p for p in (repo / "artifacts" / "broken").rglob("*") if p.is_file()] == []  # no prepared.npz
