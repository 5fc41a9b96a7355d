"""Fixtures shared across test modules. Tree generators live in tests/fixtures.py."""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gadlib.project.params import read_yaml
from tests.fixtures import (
    DATA_DIR,
    ROOT,
    run_command,
    tiny_profile_repository,
    write_cub_tree,
    write_dogs_vs_cats_tree,
    write_fashion_mnist_tree,
)

_PARAMS = read_yaml((ROOT / "params.yaml").read_text())


@pytest.fixture
def params() -> dict:
    """The repository's params.yaml as plain dicts, a fresh copy for each test to change."""
    return copy.deepcopy(_PARAMS)


@pytest.fixture
def project_dir(tmp_path, monkeypatch) -> Path:
    """An empty project (the repository's params.yaml and dvc.yaml) as the working directory, so
    gadlib.project reads and writes artifacts/ and reports/ there instead of in the repository."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("params.yaml", "dvc.yaml"):
        (project / name).write_bytes((ROOT / name).read_bytes())
    monkeypatch.chdir(project)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return project


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


@dataclass(frozen=True)
class PipelineRun:
    """A repository copy in which `dvc repro` has run: its folder, params.yaml and dvc's output."""

    repo: Path
    params: dict
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> PipelineRun:
    """The tiny profile (seed 0) run once with `dvc repro` in a copy of the repository.

    Shared by the smoke test and the repeatability tests, so the session pays for one run. Tests
    may read the copy and run commands that leave its outputs as they are (a second `dvc repro`).
    """
    if not (DATA_DIR / "fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST not obtained (run `make data`)")
    repo = tiny_profile_repository(tmp_path_factory.mktemp("tiny_pipeline") / "repo", seed=0)
    result = run_command(["dvc", "repro"], repo)
    return PipelineRun(repo, read_yaml((repo / "params.yaml").read_text()), result)


@pytest.fixture
def close_figures():
    """Close every matplotlib figure a test left open (modules that draw: ``pytestmark``)."""
    yield
    import matplotlib.pyplot as plt  # here, so modules that draw nothing import no matplotlib

    plt.close("all")
