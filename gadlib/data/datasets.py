"""Datasets: the embedded Fashion-MNIST, and the paper's Dogs vs. Cats and CUB-200-2011, loaded as
:class:`ImageSet` (pixel space: each model normalises inside itself). Raw files are only read.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from gadlib.choices import DOGS_VS_CATS_CLASSES, FASHION_MNIST_CLASSES

# md5 of the *decompressed* idx files: the same whatever gzip wrapped them (Debian or upstream).
FASHION_MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_MNIST_FILES = tuple(FASHION_MNIST_CONTENT_MD5)
CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
# What a damaged gzip stream raises: a bad header (OSError), a cut-off file (EOFError), bad deflate data.
_GZIP_ERRORS = (OSError, EOFError, zlib.error)
_RESTORE_RAW = "restore it with `dvc checkout data.dvc` or delete it and run `make data`"
_KAGGLE_NAME = re.compile(r"^(cat|dog)\.(\d+)\.(jpe?g|png)$", re.IGNORECASE)

# A class selector: one class by name or id, or a group {"name": ..., "ids": [first, last]} of
# consecutive class ids merged into one label (CUB's sparrows, ids 113-133, for instance).
ClassSelector = Union[str, int, dict]


class DataError(ValueError):
    """A dataset is missing, laid out wrongly, corrupt, or a selection does not fit it."""


@dataclass
class ImageSet:
    """Images (N, C, H, W) float32 in [0, 1], labels (N,) int64 indexing ``class_names``."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def verify_fashion_mnist(root: str | Path) -> None:
    """Check the raw files' content against the published Fashion-MNIST; raise naming any that differ."""
    for name, expected in FASHION_MNIST_CONTENT_MD5.items():
        path = Path(root) / name
        if hashlib.md5(_gunzip(path)).hexdigest() != expected:
            raise DataError(f"raw file {path} differs from the published Fashion-MNIST; {_RESTORE_RAW}")


def load_fashion_mnist(root: str | Path, split: str) -> ImageSet:
    """Read the ``"train"`` or ``"test"`` split of Fashion-MNIST from its raw idx files."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    root = Path(root)
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", expected_dims=3)
    labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", expected_dims=1)
    if len(images) != len(labels):
        raise DataError(
            f"{root}: {len(images)} images but {len(labels)} labels in the {split} split; "
            f"restore the raw files with `dvc checkout data.dvc`"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(
            f"{root}: label {int(labels.max())} in the {split} split is not a Fashion-MNIST "
            f"class (0-9); restore the raw files with `dvc checkout data.dvc`"
        )
    images = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    return ImageSet(images, torch.from_numpy(labels.astype(np.int64)), list(FASHION_MNIST_CLASSES))


def _gunzip(path: Path) -> bytes:
    """The decompressed content of a raw gzip file; DataError if missing (naming a misplaced copy) or unreadable."""
    if not path.is_file():
        unpacked = path.with_suffix("")  # train-images-idx3-ubyte: gunzipped in place
        nested = sorted(path.parent.glob(f"*/{path.name}")) + sorted(path.parent.glob(f"*/*/{path.name}"))
        if unpacked.is_file():
            hint = f"{unpacked.name} is there uncompressed; the loader reads the .gz files (gzip it again)"
        elif nested:
            hint = f"{nested[0].parent} holds it: point the experiment's data_dir in params.yaml there"
        else:
            hint = "run `make data` to obtain Fashion-MNIST"
        raise DataError(f"missing raw file {path}; {hint}")
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except _GZIP_ERRORS as exc:
        raise DataError(f"raw file {path} is not a readable gzip file ({exc}); {_RESTORE_RAW}") from exc


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    raw = _gunzip(path)
    header = 4 + 4 * expected_dims
    # idx magic: two zero bytes, 0x08 (unsigned bytes), then the number of dimensions.
    if len(raw) < header or raw[:4] != bytes([0, 0, 0x08, expected_dims]):
        raise DataError(
            f"{path} is not an idx file of {expected_dims} dimension(s) of unsigned bytes "
            f"(it starts {raw[:4].hex() or 'empty'}); {_RESTORE_RAW}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(expected_dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {data.size} data bytes but its header says shape {shape}; {_RESTORE_RAW}")
    return data.reshape(shape).copy()


def load_dogs_vs_cats(root: str | Path, image_size: int, max_per_class: int | None = None) -> ImageSet:
    """Kaggle's "Dogs vs. Cats" (a folder of ``cat.<n>.jpg`` and ``dog.<n>.jpg``) as (N, 3, image_size,
    image_size) images, cats first; with ``max_per_class`` only the first files of each class by number."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"Dogs vs. Cats folder {root} does not exist; put Kaggle's train/ images "
            f"(cat.0.jpg, dog.0.jpg, ...) there, or set the experiment's data_dir in params.yaml"
        )
    files: dict[str, list[tuple[int, Path]]] = {name: [] for name in DOGS_VS_CATS_CLASSES}
    for path in root.iterdir():
        if (match := _KAGGLE_NAME.match(path.name)) and path.is_file():
            files[match.group(1).lower()].append((int(match.group(2)), path))
    for name, found in files.items():
        if not found:
            train = root / "train"
            hint = f"; its subfolder {train} looks like Kaggle's, point data_dir there" if train.is_dir() else ""
            raise DataError(
                f"{root} holds no {name}.<n>.jpg image; the Kaggle layout is one folder "
                f"of cat.<n>.jpg and dog.<n>.jpg files{hint}"
            )
    per_label = [[path for _, path in sorted(files[name])[:max_per_class]] for name in DOGS_VS_CATS_CLASSES]
    return _read_images(per_label, image_size, DOGS_VS_CATS_CLASSES)


def load_cub200(
    root: str | Path,
    classes: Sequence[ClassSelector] | str,
    image_size: int,
    split: str,
    max_per_class: int | None = None,
) -> ImageSet:
    """CUB-200-2011's ``split`` ("train" or "test", its own) of the ``CUB_200_2011`` folder ``root`` as
    (N, 3, image_size, image_size) images, at most ``max_per_class`` per label (lowest ids first).

    ``classes``: one label per selector, in order: a CUB class id (1-200), a name from classes.txt
    (``"113.Baird_Sparrow"`` or ``"Baird_Sparrow"``), or ``{"name": "sparrow", "ids": [113, 133]}`` merging
    an id range; or ``"all"``. Every selection problem is raised before any image is decoded.
    """
    root = Path(root)
    missing = [name for name in CUB_FILES if not (root / name).is_file()]
    if not root.is_dir() or missing or not (root / "images").is_dir():
        raise DataError(
            f"{root} is not a CUB-200-2011 folder: it needs {', '.join(CUB_FILES)} and "
            f"images/ (missing: {', '.join(missing) or 'images/'}); unpack CUB_200_2011.tgz "
            f"there or set the experiment's data_dir in params.yaml"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    class_names = _read_table(root / "classes.txt")
    image_paths = _read_table(root / "images.txt")
    image_class = _read_table(root / "image_class_labels.txt", int_values=True)
    in_train = _read_table(root / "train_test_split.txt", int_values=True)
    for table, name in ((image_class, "image_class_labels.txt"), (in_train, "train_test_split.txt")):
        if odd := sorted(set(table) ^ set(image_paths))[:5]:
            raise DataError(
                f"{root / name} and images.txt list different image ids (e.g. {odd}); unpack CUB_200_2011.tgz again"
            )
    groups = _resolve_cub_selectors(classes, class_names)
    want_train = 1 if split == "train" else 0
    per_label = []
    for name, ids in groups:
        chosen = sorted(k for k, c in image_class.items() if c in ids and in_train[k] == want_train)
        if not chosen:
            raise DataError(
                f"class {name!r} has no image in CUB's {split} split under {root}; "
                f"check image_class_labels.txt and train_test_split.txt"
            )
        per_label.append([root / "images" / image_paths[k] for k in chosen[:max_per_class]])
    return _read_images(per_label, image_size, [name for name, _ in groups])


def _resolve_cub_selectors(
    classes: Sequence[ClassSelector] | str, class_names: dict[int, str]
) -> list[tuple[str, set[int]]]:
    """(label name, CUB class ids) for each selector, in order."""
    if classes == "all":
        return [(name, {cid}) for cid, name in sorted(class_names.items())]
    if isinstance(classes, (str, dict)) or len(classes) < 2:
        raise DataError(
            f"select at least two CUB classes (a list of names, ids or {{name, ids}} groups) or 'all'; got {classes!r}"
        )
    by_name = {key: cid for cid, name in class_names.items() for key in (name, name.split(".", 1)[-1])}
    id_range = f"ids run from {min(class_names)} to {max(class_names)} (classes.txt)"
    groups = []
    for sel in classes:
        if isinstance(sel, dict):
            if not _is_group(sel):
                raise DataError(
                    f"class group {sel!r} must be {{name: <label>, ids: [first, last]}} with integer ids, first <= last"
                )
            members = set(range(sel["ids"][0], sel["ids"][1] + 1))
            if unknown := sorted(members - set(class_names)):
                raise DataError(f"class ids {unknown} of group {sel['name']!r} are not in classes.txt; {id_range}")
            groups.append((str(sel["name"]), members))
        elif _is_int(sel):
            if sel not in class_names:
                raise DataError(f"unknown CUB class id {sel}; {id_range}")
            groups.append((class_names[sel], {sel}))
        elif isinstance(sel, str):
            if sel not in by_name:
                raise DataError(
                    f"unknown CUB class {sel!r}; use a name from classes.txt, e.g. {class_names[min(class_names)]!r}"
                )
            groups.append((sel, {by_name[sel]}))
        else:
            raise DataError(f"class selector {sel!r} must be a name, an id or {{name, ids: [first, last]}}")
    seen: set[int] = set()
    for name, ids in groups:
        if ids & seen:
            raise DataError(
                f"class {name!r} overlaps another selected class (ids {sorted(ids & seen)}); "
                f"each CUB class may belong to one label only"
            )
        seen |= ids
    return groups


def _is_group(sel: dict) -> bool:
    ids = sel.get("ids")
    pair = isinstance(ids, (list, tuple)) and len(ids) == 2 and all(map(_is_int, ids))
    return set(sel) == {"name", "ids"} and pair and ids[0] <= ids[1]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_table(path: Path, int_values: bool = False) -> dict:
    """``<id> <value>`` lines of a CUB metadata file as ``{id: value}``."""
    table = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            key, value = line.split(maxsplit=1)
            table[int(key)] = int(value) if int_values else value.strip()
        except ValueError:
            raise DataError(
                f"{path}, line {line_no}: expected '<id> <{'id' if int_values else 'value'}>', "
                f"got {line!r}; unpack CUB_200_2011.tgz again"
            ) from None
    return table


def _read_images(per_label: Sequence[Sequence[Path]], image_size: int, class_names: Sequence[str]) -> ImageSet:
    """The image files of each label (``per_label[i]``) as an ImageSet of (N, 3, image_size, image_size) RGB."""
    from PIL import Image, UnidentifiedImageError

    paths = [path for group in per_label for path in group]
    labels = torch.tensor([label for label, group in enumerate(per_label) for _ in group], dtype=torch.int64)
    if not _is_int(image_size) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer; got {image_size!r}")
    # Checked before decoding anything, so a missing file stops the run before the long part.
    if absent := [p for p in paths if not Path(p).is_file()]:
        raise DataError(
            f"{len(absent)} listed image file(s) do not exist, e.g. {absent[0]}; restore the dataset folder"
        )
    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                out[i] = np.asarray(img).transpose(2, 0, 1)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read image {path} ({exc}); replace or delete the file") from exc
    return ImageSet(torch.from_numpy(out).float().div_(255.0), labels, list(class_names))


def class_indices(class_names: Sequence[str], classes: Sequence[str | int]) -> list[int]:
    """Indices into ``class_names`` of the selected classes (names or ids), in order; DataError for fewer
    than two, an unknown one or a repeat."""
    if isinstance(classes, str) or len(classes) < 2:
        raise DataError(f"select at least two classes (a pair or a list), or 'all'; got {classes!r}")
    ids = []
    for sel in classes:
        if isinstance(sel, str):
            if sel not in class_names:
                raise DataError(f"unknown class {sel!r}; this dataset has {list(class_names)}")
            ids.append(list(class_names).index(sel))
        elif _is_int(sel) and 0 <= sel < len(class_names):
            ids.append(sel)
        else:
            raise DataError(
                f"unknown class id {sel!r}; ids run from 0 to {len(class_names) - 1} for {list(class_names)}"
            )
    if len(set(ids)) != len(ids):
        raise DataError(f"classes {list(classes)} name the same class twice")
    return ids


def select_classes(data: ImageSet, classes: Sequence[str | int] | str) -> ImageSet:
    """Keep the images of the chosen classes (names or ids of ``data``; ``"all"``: every class) and
    relabel them 0..len(classes)-1 in the given order."""
    if classes == "all":
        return data
    ids = class_indices(data.class_names, classes)
    new_labels = torch.full_like(data.labels, -1)
    for new, old in enumerate(ids):
        if not (members := data.labels == old).any():
            raise DataError(f"class {data.class_names[old]!r} has no image in this split")
        new_labels[members] = new
    keep = new_labels >= 0
    return ImageSet(data.images[keep], new_labels[keep], [data.class_names[i] for i in ids])


def stratified_split(
    labels: torch.Tensor,
    fractions: Sequence[float],
    seed: int,
    class_names: Sequence[str] | None = None,
    purpose: str = "",
) -> list[torch.Tensor]:
    """One sorted int64 index tensor per fraction (positive, summing to at most 1) of the (N,) ``labels``,
    class by class: of a class's n images, shuffled by ``seed``, each part takes ``round(fraction * n)``,
    at least one and leaving one for each later part (the last takes the rest when the fractions sum to
    1). ``class_names`` and ``purpose`` name the class and the split in the error for too few images."""
    if not fractions or not all(f > 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"fractions must be positive and sum to at most 1; got {list(fractions)}")
    if len(labels) == 0:
        raise DataError("cannot split an empty set of images")
    takes_rest = sum(fractions) > 1 - 1e-9
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for cls, members in _shuffled_classes(labels, seed):
        n = len(members)
        if n < len(fractions):
            name = repr(class_names[cls]) if class_names is not None else str(cls)
            raise DataError(
                f"class {name} has {n} image(s); {purpose or 'a split'} into {len(fractions)} "
                f"parts needs at least {len(fractions)} of each class: add images of it or "
                f"select another class"
            )
        start = 0
        for i, (part, fraction) in enumerate(zip(parts, fractions, strict=True)):
            later = len(fractions) - 1 - i
            count = n - start if later == 0 and takes_rest else min(max(1, round(fraction * n)), n - start - later)
            part.append(members[start : start + count])
            start += count
    return [torch.sort(torch.cat(p)).values for p in parts]


def subsample_per_class(labels: torch.Tensor, max_per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted (n,) int64 indices of at most ``max_per_class`` images of each class, chosen by ``seed``."""
    if max_per_class is None:
        return torch.arange(len(labels))
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1 or None; got {max_per_class}")
    chosen = [members[:max_per_class] for _, members in _shuffled_classes(labels, seed)]
    return torch.sort(torch.cat(chosen)).values if chosen else torch.arange(0)


def _shuffled_classes(labels: torch.Tensor, seed: int):
    """Yield (class, its indices shuffled) for each class in ascending order; ``seed`` fixes the shuffles."""
    generator = torch.Generator().manual_seed(int(seed))
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        yield cls, members[torch.randperm(len(members), generator=generator)]


def channel_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (at least 1e-6) of (N, C, H, W) images, two lists of C floats."""
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor; got {tuple(images.shape)}")
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).nan_to_num(0.0).clamp(min=1e-6)
    return mean.tolist(), std.tolist()
