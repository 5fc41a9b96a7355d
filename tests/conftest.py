"""Fixtures shared across test modules. Tree generators live in tests/fixtures.py."""

from __future__ import annotations

import copy

import pytest
import yaml

from gadlib.paths import PARAMS_FILE
from tests.fixtures import write_cub_tree, write_dogs_vs_cats_tree, write_fashion_mnist_tree

_PARAMS = yaml.safe_load(PARAMS_FILE.read_text())


@pytest.fixture
def params() -> dict:
    """The repository's params.yaml as plain dicts, a fresh copy for each test to change."""
    return copy.deepcopy(_PARAMS)


@pytest.fixture
def fashion_root(tmp_path):
    """Raw Fashion-MNIST files: 6 training and 3 test images of each class, 4 × 4 pixels."""
    return write_fashion_mnist_tree(tmp_path / "fashion-mnist")


@pytest.fixture
def dogs_root(tmp_path):
    """Kaggle's Dogs vs. Cats folder: cat.0-3.jpg and dog.0-3.jpg, 8 × 8 pixels."""
    return write_dogs_vs_cats_tree(tmp_path / "dogs-vs-cats")


@pytest.fixture
def cub_root(tmp_path):
    """CUB_200_2011 with images of classes 113, 114 (sparrows), 158, 159 (warblers): 2 train, 2 test each."""
    return write_cub_tree(tmp_path / "CUB_200_2011")
