"""Datasets: the embedded Fashion-MNIST, and the paper's Dogs vs. Cats and CUB-200-2011.

Every loader returns images as float32 tensors in [0, 1] with shape (N, C, H, W), labels as int64,
and class names. Normalisation is not applied here: each model carries its own (see
``gadlib.models.architectures``), so occlusion can fill in pixel space. Raw files are only read, never written.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from gadlib.choices import DOGS_VS_CATS_CLASSES, FASHION_MNIST_CLASSES
from gadlib.common.atomic import atomic_path

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
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
# What a damaged gzip stream raises: a bad header (OSError), a cut-off file (EOFError), bad deflate data.
_GZIP_ERRORS = (OSError, EOFError, zlib.error)

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
        for name in missing:
            _copy_atomically(system_dir / name, dest / name)
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
        f"Fashion-MNIST is not available: {system_dir} does not hold the four raw files{download_error}. "
        f"Install the Debian package (apt-get install {DEBIAN_PACKAGE}) or copy "
        f"{', '.join(FASHION_MNIST_FILES)} into {dest}."
    )


def verify_fashion_mnist(root: str | Path) -> None:
    """Check the raw files' content against the published Fashion-MNIST; raise naming any that differ."""
    root = Path(root)
    for name, expected in FASHION_MNIST_CONTENT_MD5.items():
        path = root / name
        if not path.is_file():
            raise _missing_raw_file(path)
        digest = hashlib.md5()
        try:
            with gzip.open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except _GZIP_ERRORS as exc:
            raise DataError(
                f"raw file {path} is not a readable gzip file ({exc}); restore it "
                f"with `dvc checkout data.dvc` or delete it and run `make data`"
            ) from exc
        if digest.hexdigest() != expected:
            raise DataError(
                f"raw file {path} differs from the published Fashion-MNIST; restore it "
                f"with `dvc checkout data.dvc` or delete it and run `make data`"
            )


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
    return ImageSet(
        images=torch.from_numpy(images).unsqueeze(1).float().div_(255.0),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=list(FASHION_MNIST_CLASSES),
    )


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    if not path.is_file():
        raise _missing_raw_file(path)
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except _GZIP_ERRORS as exc:
        raise DataError(
            f"raw file {path} is not a readable gzip file ({exc}); restore it with `dvc checkout data.dvc`"
        ) from exc
    header = 4 + 4 * expected_dims
    # idx magic: two zero bytes, 0x08 (unsigned bytes), then the number of dimensions.
    if len(raw) < header or raw[:4] != bytes([0, 0, 0x08, expected_dims]):
        raise DataError(
            f"{path} is not an idx file of {expected_dims} dimension(s) of unsigned bytes "
            f"(it starts {raw[:4].hex() or 'empty'}); restore it with `dvc checkout data.dvc`"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(expected_dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise DataError(
            f"{path} holds {data.size} data bytes but its header says shape {shape}; "
            f"restore it with `dvc checkout data.dvc`"
        )
    return data.reshape(shape).copy()


def _missing_raw_file(path: Path) -> DataError:
    """The error for a missing raw Fashion-MNIST file, pointing at a copy in the wrong place if any."""
    unpacked = path.with_suffix("")  # train-images-idx3-ubyte: gunzipped in place
    nested = sorted(path.parent.glob(f"*/{path.name}")) + sorted(path.parent.glob(f"*/*/{path.name}"))
    if unpacked.is_file():
        hint = f"{unpacked.name} is there uncompressed; the loader reads the .gz files (gzip it again)"
    elif nested:
        hint = f"{nested[0].parent} holds it: point the experiment's data_dir in params.yaml there"
    else:
        hint = "run `make data` to obtain Fashion-MNIST"
    return DataError(f"missing raw file {path}; {hint}")


def _has_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FASHION_MNIST_FILES)


def _copy_atomically(source: Path, target: Path) -> None:
    # An interrupted copy must not leave a partial file: a present file is never overwritten later.
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


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
        for name in names:
            _copy_atomically(Path(tmp) / "FashionMNIST" / "raw" / name, dest / name)


# --------------------------------------------------------------------------- folders of images
def load_dogs_vs_cats(root: str | Path, image_size: int, max_per_class: int | None = None) -> ImageSet:
    """Read Kaggle "Dogs vs. Cats": a folder of ``cat.<n>.jpg`` and ``dog.<n>.jpg`` files.

    Images are resized to ``image_size`` × ``image_size`` RGB. With ``max_per_class`` only the first
    files of each class, in numeric order, are read. Class names are ``["cat", "dog"]``.

    Returns
    -------
    ImageSet with images (N, 3, image_size, image_size), cats first, then dogs.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"Dogs vs. Cats folder {root} does not exist; put Kaggle's train/ images "
            f"(cat.0.jpg, dog.0.jpg, ...) there, or set the experiment's data_dir in params.yaml"
        )
    pattern = re.compile(r"^(cat|dog)\.(\d+)\.(jpe?g|png)$", re.IGNORECASE)
    files: dict[str, list[tuple[int, Path]]] = {name: [] for name in DOGS_VS_CATS_CLASSES}
    for path in root.iterdir():
        match = pattern.match(path.name)
        if match and path.is_file():
            files[match.group(1).lower()].append((int(match.group(2)), path))
    paths, labels = [], []
    for label, name in enumerate(DOGS_VS_CATS_CLASSES):
        found = sorted(files[name])
        if not found:
            hint = (
                f"; its subfolder {root / 'train'} looks like Kaggle's, point data_dir there"
                if (root / "train").is_dir()
                else ""
            )
            raise DataError(
                f"{root} holds no {name}.<n>.jpg image; the Kaggle layout is one folder "
                f"of cat.<n>.jpg and dog.<n>.jpg files{hint}"
            )
        paths += [p for _, p in found[:max_per_class]]
        labels += [label] * len(found[:max_per_class])
    images = _read_images(paths, image_size)
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64), list(DOGS_VS_CATS_CLASSES))


CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


def load_cub200(
    root: str | Path,
    classes: Sequence[ClassSelector] | str,
    image_size: int,
    split: str,
    max_per_class: int | None = None,
) -> ImageSet:
    """Read CUB-200-2011 (``CUB_200_2011/`` with images.txt, ...) for the selected classes.

    Parameters
    ----------
    root : the ``CUB_200_2011`` folder.
    classes : selectors, one label each in the given order; an int is a CUB class id (1-200), a str a
        class name from classes.txt (``"113.Baird_Sparrow"`` or ``"Baird_Sparrow"``), a dict
        ``{"name": "sparrow", "ids": [113, 133]}`` merges the id range into one label. ``"all"``: every
        class. The paper's task: sparrows 113-133 against warblers 158-178.
    image_size : images are resized to ``image_size`` × ``image_size`` RGB.
    split : "train" or "test", CUB's own split (train_test_split.txt).
    max_per_class : read at most this many images of each label (lowest image ids first).

    Returns
    -------
    ImageSet with images (N, 3, image_size, image_size); class names are the selectors' names.

    Every selection problem (unknown class, a class without images, a file listed but missing) is
    raised before any image is decoded.
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
    class_names = {int(k): v for k, v in _read_table(root / "classes.txt", int_keys=True).items()}
    image_paths = _read_table(root / "images.txt", int_keys=True)
    image_class = _read_table(root / "image_class_labels.txt", int_keys=True, int_values=True)
    in_train = _read_table(root / "train_test_split.txt", int_keys=True, int_values=True)
    for table, name in ((image_class, "image_class_labels.txt"), (in_train, "train_test_split.txt")):
        if set(table) != set(image_paths):
            odd = sorted(set(table) ^ set(image_paths))[:5]
            raise DataError(
                f"{root / name} and images.txt list different image ids (e.g. {odd}); unpack CUB_200_2011.tgz again"
            )
    groups = _resolve_cub_selectors(classes, class_names)
    want_train = 1 if split == "train" else 0
    paths, labels = [], []
    for label, (name, ids) in enumerate(groups):
        chosen = sorted(k for k, c in image_class.items() if c in ids and in_train[k] == want_train)
        if not chosen:
            raise DataError(
                f"class {name!r} has no image in CUB's {split} split under {root}; "
                f"check image_class_labels.txt and train_test_split.txt"
            )
        chosen = chosen[:max_per_class]
        paths += [root / "images" / image_paths[k] for k in chosen]
        labels += [label] * len(chosen)
    images = _read_images(paths, image_size)
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64), [name for name, _ in groups])


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
    by_name = {}
    for cid, name in class_names.items():
        by_name[name] = cid
        by_name[name.split(".", 1)[-1]] = cid
    id_range = f"ids run from {min(class_names)} to {max(class_names)} (classes.txt)"
    groups = []
    for sel in classes:
        if isinstance(sel, dict):
            if not _is_group(sel):
                raise DataError(
                    f"class group {sel!r} must be {{name: <label>, ids: [first, last]}} with integer ids, first <= last"
                )
            members = set(range(sel["ids"][0], sel["ids"][1] + 1))
            unknown = sorted(members - set(class_names))
            if unknown:
                raise DataError(f"class ids {unknown} of group {sel['name']!r} are not in classes.txt; {id_range}")
            groups.append((str(sel["name"]), members))
        elif isinstance(sel, int) and not isinstance(sel, bool):
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
    """Whether ``sel`` is ``{"name": ..., "ids": [first, last]}`` with integer ids, first <= last."""
    ids = sel.get("ids")
    return (
        set(sel) == {"name", "ids"}
        and isinstance(ids, (list, tuple))
        and len(ids) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        and ids[0] <= ids[1]
    )


def _read_table(path: Path, int_keys: bool = False, int_values: bool = False) -> dict:
    """``<id> <value>`` lines of a CUB metadata file as a dict."""
    table = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        try:
            if len(parts) != 2:
                raise ValueError
            key = int(parts[0]) if int_keys else parts[0]
            value = int(parts[1]) if int_values else parts[1].strip()
        except ValueError:
            raise DataError(
                f"{path}, line {line_no}: expected '<id> <{'id' if int_values else 'value'}>', "
                f"got {line!r}; unpack CUB_200_2011.tgz again"
            ) from None
        table[key] = value
    return table


def _read_images(paths: Sequence[Path], image_size: int) -> torch.Tensor:
    """Decode image files into (N, 3, image_size, image_size) float32 in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer; got {image_size!r}")
    # Checked before decoding anything, so a missing file stops the run before the long part.
    absent = [p for p in paths if not Path(p).is_file()]
    if absent:
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
    return torch.from_numpy(out).float().div_(255.0)


# --------------------------------------------------------------------------- selection and splits
def class_indices(class_names: Sequence[str], classes: Sequence[str | int]) -> list[int]:
    """Indices into ``class_names`` of the selected classes (names or ids), in the given order.

    Raises :class:`DataError` for fewer than two classes, an unknown name or id, or a repeat, so a
    selection can be checked before a dataset is read.
    """
    if isinstance(classes, str) or len(classes) < 2:
        raise DataError(f"select at least two classes (a pair or a list), or 'all'; got {classes!r}")
    ids = []
    for sel in classes:
        if isinstance(sel, str):
            if sel not in class_names:
                raise DataError(f"unknown class {sel!r}; this dataset has {list(class_names)}")
            ids.append(list(class_names).index(sel))
        elif isinstance(sel, int) and not isinstance(sel, bool) and 0 <= sel < len(class_names):
            ids.append(sel)
        else:
            raise DataError(
                f"unknown class id {sel!r}; ids run from 0 to {len(class_names) - 1} for {list(class_names)}"
            )
    if len(set(ids)) != len(ids):
        raise DataError(f"classes {list(classes)} name the same class twice")
    return ids


def select_classes(data: ImageSet, classes: Sequence[str | int] | str) -> ImageSet:
    """Keep the images of the chosen classes and relabel them 0..len(classes)-1 in the given order.

    ``classes`` holds class names or ids of ``data``; ``"all"`` keeps every class.
    """
    if classes == "all":
        return data
    ids = class_indices(data.class_names, classes)
    keep = torch.zeros_like(data.labels, dtype=torch.bool)
    new_labels = torch.full_like(data.labels, -1)
    for new, old in enumerate(ids):
        members = data.labels == old
        if not members.any():
            raise DataError(f"class {data.class_names[old]!r} has no image in this split")
        keep |= members
        new_labels[members] = new
    return ImageSet(data.images[keep], new_labels[keep], [data.class_names[i] for i in ids])


def stratified_split(
    labels: torch.Tensor,
    fractions: Sequence[float],
    seed: int,
    class_names: Sequence[str] | None = None,
    purpose: str = "",
) -> list[torch.Tensor]:
    """Split indices into parts with the given fractions, class by class, deterministically.

    Of a class's n images (in an order shuffled by ``seed``), each part takes ``round(fraction * n)``,
    but at least one and never so many that a later part would get none. When the fractions sum to
    1 the last part takes the remainder, so every image is used.

    Parameters
    ----------
    labels : (N,) int tensor
    fractions : positive, summing to at most 1
    seed : the same seed gives the same split
    class_names, purpose : name the class (``class_names[label]``) and the split (e.g. "the
        validation split (data.val_fraction)") in the error for a class with too few images

    Returns
    -------
    One sorted (n_part,) int64 index tensor per fraction. Raises if a class has fewer images than
    there are parts.
    """
    if not fractions or not all(f > 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"fractions must be positive and sum to at most 1; got {list(fractions)}")
    if len(labels) == 0:
        raise DataError("cannot split an empty set of images")
    takes_rest = sum(fractions) > 1 - 1e-9
    generator = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
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
            if later == 0 and takes_rest:
                count = n - start
            else:
                count = min(max(1, round(fraction * n)), n - start - later)
            part.append(members[start : start + count])
            start += count
    return [torch.sort(torch.cat(p)).values for p in parts]


def subsample_per_class(labels: torch.Tensor, max_per_class: int | None, seed: int) -> torch.Tensor:
    """Sorted (n,) int64 indices of at most ``max_per_class`` images of each class, chosen by ``seed``."""
    if max_per_class is None:
        return torch.arange(len(labels))
    if max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1 or None; got {max_per_class}")
    if len(labels) == 0:
        return torch.arange(0)
    generator = torch.Generator().manual_seed(int(seed))
    chosen = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:max_per_class]])
    return torch.sort(torch.cat(chosen)).values


def channel_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of (N, C, H, W) images: the models' normalisation.

    Returns two lists of C floats; the std is at least 1e-6 so normalising never divides by zero.
    """
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor; got {tuple(images.shape)}")
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).nan_to_num(0.0).clamp(min=1e-6)
    return mean.tolist(), std.tolist()
