"""Datasets: the embedded Fashion-MNIST, and the paper's Dogs vs. Cats and CUB-200-2011.

Every loader returns images as float32 tensors in [0, 1] with shape (N, C, H, W), labels as int64,
and class names. Normalisation is not applied here: each model carries its own (see
``gadlib.models``), so occlusion can fill in pixel space. Raw files are only read, never written.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

DATASETS = ("fashion_mnist", "dogs_vs_cats", "cub200")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
)
# md5 of the *decompressed* idx files: the same whatever gzip wrapped them (Debian or upstream).
FASHION_MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# A class selector: one class by name or id, or a group {"name": ..., "ids": [first, last]} of
# consecutive class ids merged into one label (CUB's sparrows, ids 113-133, for instance).
ClassSelector = Union[str, int, dict]


class DataError(ValueError):
    """A dataset is missing, laid out wrongly, corrupt, or a selection does not fit it."""


@dataclass
class ImageSet:
    """Images with their labels.

    Attributes
    ----------
    images : (N, C, H, W) float32 tensor in [0, 1]
    labels : (N,) int64 tensor, indices into ``class_names``
    class_names : list of str
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------- Fashion-MNIST
def obtain_fashion_mnist(
    dest: str | Path,
    system_dir: str | Path = DEBIAN_FASHION_MNIST_DIR,
    use_apt: bool = True,
    use_download: bool = True,
) -> str:
    """Put the four raw Fashion-MNIST files into ``dest``, byte for byte; return where they came from.

    Files already in ``dest`` are kept as they are (raw data is never overwritten). Otherwise the
    sources are tried in order: the Debian package's folder (installing ``dataset-fashion-mnist``
    with apt when missing and ``use_apt``), then torchvision's download (``use_download``).
    """
    dest = Path(dest)
    missing = [name for name in FASHION_MNIST_FILES if not (dest / name).is_file()]
    if not missing:
        return "already present"
    system_dir = Path(system_dir)
    if not _has_files(system_dir) and use_apt and shutil.which("apt-get"):
        _apt_install(DEBIAN_PACKAGE)
    if _has_files(system_dir):
        dest.mkdir(parents=True, exist_ok=True)
        for name in missing:
            shutil.copyfile(system_dir / name, dest / name)
        return f"Debian package {DEBIAN_PACKAGE} ({system_dir})"
    if use_download:
        try:
            _download_with_torchvision(dest, missing)
            return "torchvision download"
        except Exception as exc:  # any network or mirror failure ends in the one message below
            download_error = f"; torchvision's download failed too ({exc})"
    else:
        download_error = ""
    raise DataError(
        f"Fashion-MNIST is not available: {system_dir} has no raw files{download_error}. "
        f"Install the Debian package ({'apt-get update && apt-get install ' + DEBIAN_PACKAGE}) or copy "
        f"{', '.join(FASHION_MNIST_FILES)} into {dest}."
    )


def verify_fashion_mnist(root: str | Path) -> None:
    """Check the raw files' content against the published Fashion-MNIST; raise naming any that differ."""
    root = Path(root)
    for name, expected in FASHION_MNIST_CONTENT_MD5.items():
        path = root / name
        if not path.is_file():
            raise DataError(f"missing raw file {path}; run `make data` to obtain Fashion-MNIST")
        digest = hashlib.md5()
        try:
            with gzip.open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except (OSError, EOFError) as exc:
            raise DataError(f"raw file {path} is not a readable gzip file ({exc}); restore it "
                            f"with `dvc checkout data.dvc` or delete it and run `make data`") from exc
        if digest.hexdigest() != expected:
            raise DataError(f"raw file {path} differs from the published Fashion-MNIST; restore it "
                            f"with `dvc checkout data.dvc` or delete it and run `make data`")


def load_fashion_mnist(root: str | Path, split: str) -> ImageSet:
    """Read the ``"train"`` or ``"test"`` split of Fashion-MNIST from its raw idx files."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    root = Path(root)
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", expected_dims=3)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", expected_dims=1)
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
    return ImageSet(
        images=torch.from_numpy(images).unsqueeze(1).float().div_(255.0),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=list(FASHION_MNIST_CLASSES),
    )


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"missing raw file {path}; run `make data` to obtain Fashion-MNIST")
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"raw file {path} is not a readable gzip file ({exc})") from exc
    magic = int.from_bytes(raw[0:4], "big")
    dims = magic & 0xFF
    if magic >> 8 != 0x08 or dims != expected_dims:
        raise DataError(f"{path} is not an idx file of {expected_dims} dimension(s) (magic {magic:#x})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).copy()
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape)


def _has_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FASHION_MNIST_FILES)


def _apt_install(package: str) -> None:
    # Best effort: without root or apt sources this simply fails and the next source is tried.
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            return


def _download_with_torchvision(dest: Path, names: Sequence[str]) -> None:
    import tempfile

    from torchvision.datasets import FashionMNIST

    with tempfile.TemporaryDirectory() as tmp:
        FashionMNIST(tmp, train=True, download=True)
        FashionMNIST(tmp, train=False, download=True)
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(Path(tmp) / "FashionMNIST" / "raw" / name, dest / name)


# --------------------------------------------------------------------------- folders of images
def load_dogs_vs_cats(root: str | Path, image_size: int, max_per_class: int | None = None) -> ImageSet:
    """Read Kaggle "Dogs vs. Cats": a folder of ``cat.<n>.jpg`` and ``dog.<n>.jpg`` files.

    Images are resized to ``image_size`` × ``image_size`` RGB. With ``max_per_class`` only the first
    files of each class, in numeric order, are read. Class names are ``["cat", "dog"]``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dogs vs. Cats folder {root} does not exist; put Kaggle's train/ images "
                        f"(cat.0.jpg, dog.0.jpg, ...) there, or set data.dogs_vs_cats_dir in params.yaml")
    pattern = re.compile(r"^(cat|dog)\.(\d+)\.(jpe?g|png)$", re.IGNORECASE)
    files: dict[str, list[tuple[int, Path]]] = {"cat": [], "dog": []}
    for path in root.iterdir():
        match = pattern.match(path.name)
        if match:
            files[match.group(1).lower()].append((int(match.group(2)), path))
    class_names = ["cat", "dog"]
    paths, labels = [], []
    for label, name in enumerate(class_names):
        found = sorted(files[name])
        if not found:
            raise DataError(f"{root} holds no {name}.<n>.jpg image; the Kaggle layout is one folder "
                            f"of cat.<n>.jpg and dog.<n>.jpg files")
        if max_per_class is not None:
            found = found[:max_per_class]
        paths += [p for _, p in found]
        labels += [label] * len(found)
    return ImageSet(_read_images(paths, image_size), torch.tensor(labels, dtype=torch.int64), class_names)


CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def load_cub200(
    root: str | Path,
    classes: Sequence[ClassSelector],
    image_size: int,
    split: str,
    max_per_class: int | None = None,
) -> ImageSet:
    """Read CUB-200-2011 (``CUB_200_2011/`` with images.txt, ...) for the selected classes.

    Parameters
    ----------
    classes : selectors; an int is a CUB class id (1-200), a str a class name from classes.txt
        (``"113.Baird_Sparrow"`` or ``"Baird_Sparrow"``), a dict ``{"name": "sparrow", "ids": [113, 133]}``
        merges the id range into one label. The paper's task: sparrows 113-133 against warblers 158-178.
    split : "train" or "test", CUB's own split (train_test_split.txt).
    """
    root = Path(root)
    missing = [name for name in CUB_FILES if not (root / name).is_file()]
    if not root.is_dir() or missing or not (root / "images").is_dir():
        raise DataError(f"{root} is not a CUB-200-2011 folder: it needs {', '.join(CUB_FILES)} and "
                        f"images/; unpack CUB_200_2011.tgz there or set data.cub200_dir in params.yaml")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    id_to_name = dict(_read_pairs(root / "classes.txt"))
    image_paths = dict(_read_pairs(root / "images.txt"))
    image_class = {k: int(v) for k, v in _read_pairs(root / "image_class_labels.txt")}
    is_train = {k: v == "1" for k, v in _read_pairs(root / "train_test_split.txt")}
    class_ids = {int(k): v for k, v in id_to_name.items()}
    groups = _resolve_cub_selectors(classes, class_ids)
    paths, labels = [], []
    for label, (_, ids) in enumerate(groups):
        chosen = sorted(k for k, c in image_class.items()
                        if c in ids and is_train.get(k, False) == (split == "train"))
        chosen = sorted(chosen, key=int)
        if max_per_class is not None:
            chosen = chosen[:max_per_class]
        if not chosen:
            raise DataError(f"class {groups[label][0]!r} has no image in CUB's {split} split under {root}")
        paths += [root / "images" / image_paths[k] for k in chosen]
        labels += [label] * len(chosen)
    names = [name for name, _ in groups]
    return ImageSet(_read_images(paths, image_size), torch.tensor(labels, dtype=torch.int64), names)


def _resolve_cub_selectors(classes: Sequence[ClassSelector], class_ids: dict[int, str]):
    by_name = {}
    for cid, name in class_ids.items():
        by_name[name] = cid
        by_name[name.split(".", 1)[-1]] = cid
    groups = []
    for sel in classes:
        if isinstance(sel, dict):
            first, last = sel["ids"]
            ids = set(range(int(first), int(last) + 1))
            unknown = sorted(ids - set(class_ids))
            if unknown:
                raise DataError(f"class ids {unknown} of group {sel['name']!r} are not in classes.txt")
            groups.append((str(sel["name"]), ids))
        elif isinstance(sel, int) and not isinstance(sel, bool):
            if sel not in class_ids:
                raise DataError(f"unknown CUB class id {sel}; ids run from {min(class_ids)} to {max(class_ids)}")
            groups.append((class_ids[sel], {sel}))
        elif isinstance(sel, str):
            if sel not in by_name:
                raise DataError(f"unknown CUB class {sel!r}; names are listed in classes.txt")
            groups.append((sel, {by_name[sel]}))
        else:
            raise DataError(f"class selector {sel!r} must be a name, an id or {{name, ids: [first, last]}}")
    return groups


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}, line {line_no}: expected '<id> <value>', got {line!r}")
        pairs.append((parts[0], parts[1].strip()))
    return pairs


def _read_images(paths: Sequence[Path], image_size: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                out[i] = np.asarray(img).transpose(2, 0, 1)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataError(f"cannot read image {path} ({exc}); replace or delete the file") from exc
    return torch.from_numpy(out).float().div_(255.0)


# --------------------------------------------------------------------------- selection and splits
def select_classes(data: ImageSet, classes: Sequence[str | int] | str) -> ImageSet:
    """Keep the images of the chosen classes and relabel them 0..len(classes)-1 in the given order.

    ``classes`` holds class names or ids of ``data``; ``"all"`` keeps every class.
    """
    if classes == "all":
        return data
    if isinstance(classes, str) or len(classes) < 2:
        raise DataError(f"select at least two classes (a pair or a list), or 'all'; got {classes!r}")
    ids = []
    for sel in classes:
        if isinstance(sel, str):
            if sel not in data.class_names:
                raise DataError(f"unknown class {sel!r}; this dataset has {data.class_names}")
            ids.append(data.class_names.index(sel))
        elif isinstance(sel, int) and not isinstance(sel, bool) and 0 <= sel < len(data.class_names):
            ids.append(sel)
        else:
            raise DataError(f"unknown class id {sel!r}; ids run from 0 to {len(data.class_names) - 1}")
    if len(set(ids)) != len(ids):
        raise DataError(f"classes {list(classes)} name the same class twice")
    keep = torch.zeros_like(data.labels, dtype=torch.bool)
    new_labels = torch.full_like(data.labels, -1)
    for new, old in enumerate(ids):
        members = data.labels == old
        if not members.any():
            raise DataError(f"class {data.class_names[old]!r} has no image in this split")
        keep |= members
        new_labels[members] = new
    return ImageSet(data.images[keep], new_labels[keep], [data.class_names[i] for i in ids])


def stratified_split(labels: torch.Tensor, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Split indices into parts with the given fractions, class by class, deterministically.

    Returns one sorted index tensor per fraction (the last part takes the remainder). Raises if a
    class has too few images to give every part at least one.
    """
    if not fractions or any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"fractions must be positive and sum to at most 1; got {list(fractions)}")
    generator = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        if len(members) < len(fractions):
            raise DataError(f"class {cls} has {len(members)} image(s); a split into {len(fractions)} "
                            f"parts needs at least {len(fractions)}")
        counts = [max(1, int(round(f * len(members)))) for f in fractions[:-1]]
        counts.append(len(members) - sum(counts) if sum(fractions) > 1 - 1e-9
                      else max(1, int(round(fractions[-1] * len(members)))))
        if counts[-1] < 1 or sum(counts) > len(members):
            raise DataError(f"class {cls} has {len(members)} images, too few for the split {list(fractions)}")
        start = 0
        for part, count in zip(parts, counts):
            part.append(members[start:start + count])
            start += count
    return [torch.sort(torch.cat(p)).values for p in parts]


def subsample_per_class(labels: torch.Tensor, max_per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of at most ``max_per_class`` images of each class, chosen by ``seed``."""
    if max_per_class is None:
        return torch.arange(len(labels))
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1 or None; got {max_per_class}")
    generator = torch.Generator().manual_seed(int(seed))
    chosen = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:max_per_class]])
    return torch.sort(torch.cat(chosen)).values


def channel_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of (N, C, H, W) images: the models' normalisation."""
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor; got {tuple(images.shape)}")
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp(min=1e-6)
    return mean.tolist(), std.tolist()
