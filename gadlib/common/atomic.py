"""Atomic file output: write to a temporary file beside the target, then rename over it, so an
interrupted writer (killed process, full disk) never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder, renamed onto ``path`` on success; on any exception
    it is removed and ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)  # read it (the only way) and put it back
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as err:
        # A full disk raises on the temporary's name, or on none: name the file the user asked for.
        if err.errno is None or err.filename not in (None, str(tmp)):
            raise
        raise type(err)(
            err.errno, f"{err.strerror}; {target} was not written (a previous version, if any, is unchanged)"
        ) from err
    finally:
        if tmp.exists():
            tmp.unlink()


TEMPORARY_GLOB = ".*.tmp"  # what atomic_path names its temporary files: .<target name>.<random>.tmp


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writers killed mid-write (kill -9, power loss) left in ``folder``;
    return their paths. Call it only where no other process is writing into ``folder``."""
    stale = sorted(p for p in Path(folder).glob(TEMPORARY_GLOB) if p.is_file())  # none if no such folder
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically; NaN is written as null so any JSON reader parses it."""
    write_text(path, json.dumps(_nan_to_none(obj), indent=2, allow_nan=False) + "\n")


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save named arrays to an ``.npz`` file atomically; object arrays are refused (no pickle)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; only numeric arrays are saved (no pickle)")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load an ``.npz`` written by :func:`save_arrays` without unpickling anything: ValueError naming the
    file (and array) if it is unreadable or holds Python objects (unpickling can run code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"array file {path} does not exist")
    name = None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {}
            for name in data.files:
                arrays[name] = data[name]
            return arrays
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        if not (isinstance(err, ValueError) and "allow_pickle" in str(err)):
            raise ValueError(
                f"{path} is not a readable .npz array file (truncated or another format: {err}); "
                f"delete it and re-run the stage that writes it"
            ) from err
        what = (
            f"array {name!r} of {path}: it holds Python objects"
            if name is not None
            else f"{path}: it is not an .npz archive but pickled data (or garbage)"
        )
        raise ValueError(
            f"refused to load {what}, and unpickling could run code; only numeric "
            f"arrays written by gadlib.common.atomic.save_arrays are read"
        ) from err


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if np.isfinite(value) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj
