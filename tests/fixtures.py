"""Generators of tiny dataset trees in the exact layouts the loaders read, and temporary copies of
the repository for tests that run its commands (stages, `dvc repro`).

Each image's grey level encodes where it came from, so a test can check which file ended up where.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the repository these tests belong to
DATA_DIR = ROOT / "data"

FASHION_SIZE = 4  # pixels per side of the generated Fashion-MNIST images


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as a gzipped idx file: magic 00 00 08 <ndim>, big-endian sizes, the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())
    return path


TEST_OFFSET = 128  # grey level of the first generated test image


def fashion_images(n: int, offset: int = 0) -> np.ndarray:
    """(n, 4, 4) uint8 images; image i is uniformly grey ``offset + i``, so every image is unique."""
    levels = (offset + np.arange(n)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None], (n, FASHION_SIZE, FASHION_SIZE)).copy()


def write_fashion_mnist_tree(root: Path, train_per_class: int = 6, test_per_class: int = 3) -> Path:
    """The four raw Fashion-MNIST files with that many images of each of the 10 classes.

    Labels cycle 0-9 (image i has label i % 10, as interleaved as the real files); training image i
    has grey level i, test image i grey level ``TEST_OFFSET + i``. At most 12 per class of each.
    """
    for prefix, n, offset in (("train", train_per_class, 0), ("t10k", test_per_class, TEST_OFFSET)):
        labels = np.tile(np.arange(10, dtype=np.uint8), n)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", fashion_images(len(labels), offset))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def write_jpeg(path: Path, level: int, size: int = 8) -> Path:
    """A uniform grey ``size`` × ``size`` JPEG (uniform, so JPEG keeps the level within a unit or two)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (level, level, level)).save(path, format="JPEG", quality=95)
    return path


def write_dogs_vs_cats_tree(root: Path, per_class: int = 4, size: int = 8) -> Path:
    """Kaggle's layout, one folder: ``cat.<n>.jpg`` (grey 10 + 10n) and ``dog.<n>.jpg`` (grey 130 + 10n).

    Grey levels grow with n up to n = 11; beyond that they repeat.
    """
    for n in range(per_class):
        write_jpeg(root / f"cat.{n}.jpg", 10 + 10 * (n % 12), size)
        write_jpeg(root / f"dog.{n}.jpg", 130 + 10 * (n % 12), size)
    return root


def cub_class_name(class_id: int) -> str:
    """A classes.txt name: the real one for the classes tests use, a stand-in for the rest."""
    known = {
        113: "Baird_Sparrow",
        114: "Black_throated_Sparrow",
        115: "Brewer_Sparrow",
        158: "Bay_breasted_Warbler",
        159: "Black_and_white_Warbler",
    }
    return f"{class_id:03d}.{known.get(class_id, f'Bird_{class_id:03d}')}"


def write_cub_tree(root: Path, class_ids=(113, 114, 158, 159), per_class: int = 4, size: int = 8) -> Path:
    """A CUB_200_2011 folder: classes.txt with all 200 classes, images only for ``class_ids``.

    Each listed class gets ``per_class`` images ``images/<class>/<name>_<n>.jpg`` of grey level = its
    id; even n are in CUB's train split, odd n in its test split.
    """
    images, labels, split = [], [], []
    for cid in class_ids:
        name = cub_class_name(cid)
        for n in range(per_class):
            image_id = len(images) + 1
            rel = f"{name}/{name.split('.', 1)[1]}_{n:04d}.jpg"
            write_jpeg(root / "images" / rel, cid, size)
            images.append(f"{image_id} {rel}\n")
            labels.append(f"{image_id} {cid}\n")
            split.append(f"{image_id} {1 if n % 2 == 0 else 0}\n")
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{cid} {cub_class_name(cid)}\n" for cid in range(1, 201)))
    (root / "images.txt").write_text("".join(images))
    (root / "image_class_labels.txt").write_text("".join(labels))
    (root / "train_test_split.txt").write_text("".join(split))
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time (ns) of every file under ``root``; equal snapshots: untouched."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- repository copies
def copy_repository(dest: Path) -> Path:
    """Copy the tracked and untracked-but-not-ignored files (what a clone plus the change holds)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def repository_env(repo: Path) -> dict[str, str]:
    """Environment for a command run in a copy: that copy's gadlib, this interpreter's tools (dvc)."""
    env = dict(os.environ, PYTHONPATH=str(repo), MPLBACKEND="Agg")
    env.pop("DVC_ROOT", None)  # the copy is the project, even when the tests themselves run under DVC
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run_command(cmd: list[str], cwd: Path):
    """Run ``cmd`` in the copy ``cwd``; fail the test with the output's tail unless it exits 0."""
    result = subprocess.run(cmd, cwd=cwd, env=repository_env(cwd), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def tiny_profile_repository(dest: Path, seed: int = 0) -> Path:
    """A copy of the repository with the embedded Fashion-MNIST and profiles/tiny.yaml (with ``seed``)
    as params.yaml, ready for `dvc repro`."""
    repo = copy_repository(dest)
    shutil.copytree(DATA_DIR / "fashion-mnist", repo / "data" / "fashion-mnist")
    text = (repo / "profiles" / "tiny.yaml").read_text()
    text, count = re.subn(r"(?m)^seed: \d+", f"seed: {seed}", text)
    assert count == 1, "profiles/tiny.yaml must set the seed on one top-level 'seed:' line"
    (repo / "params.yaml").write_text(text)
    return repo


# --------------------------------------------------------------------------- prepared data
SMALL_CNN_EXPERIMENT = {
    "dataset": "fashion_mnist",
    "data_dir": "unused",
    "classes": ["T-shirt/top", "Shirt"],
    "architecture": "small_cnn",
    "image_size": 16,
    "strategy": "pair",
}


def tiny_prepared_data(n: int = 4):
    """PreparedData of ``n`` random 1 x 16 x 16 images, the same in each split, for SMALL_CNN_EXPERIMENT."""
    import torch

    from gadlib.data.datasets import ImageSet
    from gadlib.data.prepared import PreparedData

    part = ImageSet(torch.rand(n, 1, 16, 16), torch.arange(n) % 2, ["T-shirt/top", "Shirt"])
    return PreparedData(part, part, part, mean=[0.5], std=[0.25])
