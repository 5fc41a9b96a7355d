"""Datasets: the embedded Fashion-MNIST, and the paper's Dogs vs. Cats and CUB-200-2011.

Loaders return images as (N, C, H, W) float32 tensors in [0, 1], int64 labels and class names.
They do not normalise: each model carries its own normalisation (``gadlib.models.architectures``),
so occlusion can fill in pixel space. Raw files are only read, never written.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch

from gadlib.choices import DOGS_VS_CATS_CLASSES, FASHION_MNIST_CLASSES
from gadlib.common.atomic import atomic_path

# md5 of the *decompressed* idx files: the same whatever gzip wrapped them (Debian or upstream).
FASHION_MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_MNIST_FILES = tuple(FASHION_MNIST_CONTENT_MD5)
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
APT_LOCK_TIMEOUT_SECONDS = 120  # how long apt waits for a dpkg lock that another apt process holds
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


# --------------------------------------------------------------------------- Fashion-MNIST
def obtain_fashion_mnist(
    dest: str | Path,
    system_dir: str | Path = DEBIAN_FASHION_MNIST_DIR,
    use_apt: bool = True,
    use_download: bool = True,
    report: Callable[[str], None] | None = None,
) -> str:
    """Put the four raw Fashion-MNIST files into ``dest``, byte for byte; return where they came from.

    Files already in ``dest`` are kept (raw data is never overwritten). Otherwise the sources are
    tried in order: the Debian package's folder (installed with apt when missing and ``use_apt``,
    waiting up to :data:`APT_LOCK_TIMEOUT_SECONDS` for a dpkg lock that another apt holds), then
    torchvision's download (``use_download``). ``report`` receives a line before each slow step.

    Raises
    ------
    DataError when no source worked, with each source's reason (apt's own error message included).
    """
    dest, system_dir = Path(dest), Path(system_dir)
    report = report or (lambda message: None)
    missing = [name for name in FASHION_MNIST_FILES if not (dest / name).is_file()]
    if not missing:
        return "already present"
    in_system_dir = lambda: all((system_dir / name).is_file() for name in FASHION_MNIST_FILES)
    apt_error = ""
    if not in_system_dir() and use_apt and shutil.which("apt-get"):
        # Best effort: without root or apt sources this fails and the next source is tried.
        report(f"installing {DEBIAN_PACKAGE} with apt-get (waits up to {APT_LOCK_TIMEOUT_SECONDS} s for a held lock)")
        failure = install_debian_package(DEBIAN_PACKAGE)
        apt_error = f"; {failure}" if failure else ""
    if in_system_dir():
        for name in missing:
            _copy_atomically(system_dir / name, dest / name)
        return f"Debian package {DEBIAN_PACKAGE} ({system_dir})"
    download_error = ""
    if use_download:
        report("downloading Fashion-MNIST with torchvision")
        try:
            from torchvision.datasets import FashionMNIST

            with tempfile.TemporaryDirectory() as tmp:
                FashionMNIST(tmp, train=True, download=True)
                FashionMNIST(tmp, train=False, download=True)
                for name in missing:
                    _copy_atomically(Path(tmp) / "FashionMNIST" / "raw" / name, dest / name)
            return "torchvision download"
        except Exception as exc:  # any network or mirror failure ends in the one message below
            download_error = f"; torchvision's download failed too ({exc})"
    raise DataError(
        f"Fashion-MNIST is not available: {system_dir} does not hold the four raw files{apt_error}{download_error}. "
        f"Install the Debian package (apt-get install {DEBIAN_PACKAGE}) or copy "
        f"{', '.join(FASHION_MNIST_FILES)} into {dest}."
    )


def install_debian_package(package: str, lock_timeout: int = APT_LOCK_TIMEOUT_SECONDS) -> str | None:
    """Install ``package`` with ``apt-get`` (index update first); None on success, else why not.

    apt waits up to ``lock_timeout`` seconds for a dpkg lock held by another apt process
    (``-o DPkg::Lock::Timeout``) instead of failing at once. A failed index update (one unreachable
    source, say) does not stop the install, which may work from the lists already there.

    Returns
    -------
    None, or one line naming the command that failed, its exit status and apt's own error output.
    """
    wait = ["-o", f"DPkg::Lock::Timeout={lock_timeout}"]
    failures = []
    for cmd in (["apt-get", *wait, "update", "-qq"], ["apt-get", *wait, "install", "-y", "-qq", package]):
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            return f"`{' '.join(cmd)}` could not run ({exc})"
        if result.returncode != 0:
            said = " ".join((result.stderr or result.stdout).split())[-600:] or "no message"
            failures.append(f"`{' '.join(cmd)}` failed (exit {result.returncode}): {said}")
        elif cmd[-1] == package:
            return None
    return "; ".join(failures)


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
    """The decompressed content of a raw gzip file; DataError if it is missing (pointing at a copy in
    the wrong place, if any) or unreadable."""
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


def _copy_atomically(source: Path, target: Path) -> None:
    # An interrupted copy must not leave a partial file: a present file is never overwritten later.
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


# --------------------------------------------------------------------------- folders of images
def load_dogs_vs_cats(root: str | Path, image_size: int, max_per_class: int | None = None) -> ImageSet:
    """Read Kaggle "Dogs vs. Cats": a folder of ``cat.<n>.jpg`` and ``dog.<n>.jpg`` files.

    Returns an ImageSet of (N, 3, image_size, image_size) RGB images, cats first, class names
    ``["cat", "dog"]``; with ``max_per_class`` only the first files of each class in numeric order.
    """
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
    """Read CUB-200-2011 (the ``CUB_200_2011`` folder ``root``, with images.txt, ...) for the selected classes.

    Parameters
    ----------
    classes : selectors, one label each in the given order: an int is a CUB class id (1-200), a str
        a class name from classes.txt (``"113.Baird_Sparrow"`` or ``"Baird_Sparrow"``), a dict
        ``{"name": "sparrow", "ids": [113, 133]}`` merges the id range into one label; ``"all"``:
        every class. The paper's task: sparrows 113-133 against warblers 158-178.
    image_size : images are resized to ``image_size`` × ``image_size`` RGB.
    split : "train" or "test", CUB's own split (train_test_split.txt).
    max_per_class : read at most this many images of each label (lowest image ids first).

    Returns an ImageSet of (N, 3, image_size, image_size) images named by the selectors; every
    selection problem is raised before any image is decoded.
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
    """Whether ``sel`` is ``{"name": ..., "ids": [first, last]}`` with integer ids, first <= last."""
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
    """Decode the image files of each label (``per_label[i]``: those of label i) into an ImageSet of
    (N, 3, image_size, image_size) RGB images."""
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


# --------------------------------------------------------------------------- selection and splits
def class_indices(class_names: Sequence[str], classes: Sequence[str | int]) -> list[int]:
    """Indices into ``class_names`` of the selected classes (names or ids), in the given order; raises
    DataError for fewer than two, an unknown name or id, or a repeat (a check before any reading)."""
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
    """Split indices into parts with the given fractions, class by class, deterministically.

    Of a class's n images (shuffled by ``seed``), each part takes ``round(fraction * n)``, but at
    least one and never so many that a later part would get none; when the fractions sum to 1 the
    last part takes the remainder. ``labels``: (N,) int tensor; ``fractions``: positive, summing to
    at most 1; ``class_names`` and ``purpose`` name the class and the split (e.g. "the validation
    split (data.val_fraction)") in the error for a class with fewer images than parts. Returns one
    sorted (n_part,) int64 index tensor per fraction.
    """
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
    """Per-channel mean and std (at least 1e-6) of (N, C, H, W) images, as two lists of C floats:
    the models' normalisation."""
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor; got {tuple(images.shape)}")
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).nan_to_num(0.0).clamp(min=1e-6)
    return mean.tolist(), std.tolist()
