"""Obtain the embedded Fashion-MNIST raw files and check them against their pin in ``data.dvc``.

Run as ``python -m gadlib.pipeline.fetch`` (``make data``). Raw files that are already present are never
overwritten; a raw file that differs from its pin stops the run here, before it feeds the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from gadlib.data.datasets import DataError, obtain_fashion_mnist, verify_fashion_mnist
from gadlib.pipeline.params import load_params, resolve_path
from gadlib.pipeline.paths import ROOT

PIN_FILE = ROOT / "data.dvc"


def check_pin(dvc: str = "dvc", pin_file: str | Path = PIN_FILE) -> str:
    """Compare the raw data with its pin (``data.dvc``); return "clean", or raise if a raw file changed.

    On a fresh clone, with the files not yet in DVC's cache, ``dvc status`` says only "not in cache"
    even for a modified file: then the content is hashed here as DVC would and compared with the pin,
    and only if it matches is it committed to the cache (the pin is unchanged).
    """
    pin_file = Path(pin_file)
    stdout = _dvc(dvc, "status", pin_file, "--json")
    try:
        status = json.loads(stdout or "{}")
    except json.JSONDecodeError as exc:
        raise DataError(f"`dvc status --json {pin_file.name}` printed no JSON ({exc}): {stdout[:200]!r}") from exc
    changes: dict[str, str] = {}
    for entries in status.values():
        for entry in entries:
            if isinstance(entry, dict):
                changes.update(entry.get("changed outs", {}))
            else:  # e.g. "changed checksum": the pin file itself was edited
                changes[pin_file.name] = str(entry)
    if not changes:
        return "clean"
    if set(changes.values()) == {"not in cache"}:
        pins = pinned_hashes(pin_file)
        differ = {out: "modified" for out in changes if dvc_md5(pin_file.parent / out) != pins.get(out)}
        if not differ:
            _dvc(dvc, "commit", pin_file, "--force", "--quiet")
            return "clean (added to DVC's cache)"
        changes = differ
    raise DataError(
        f"raw data differs from its pin in {pin_file.name}: {changes}. Restore it with "
        f"`dvc checkout {pin_file.name}`, or delete the folder and run `make data`"
    )


def pinned_hashes(pin_file: str | Path) -> dict[str, str]:
    """``{path: md5}`` of the outputs a ``.dvc`` file pins (a folder's md5 ends in ``.dir``)."""
    spec = yaml.safe_load(Path(pin_file).read_text()) or {}
    return {out["path"]: out["md5"] for out in spec.get("outs", []) if "path" in out and "md5" in out}


def dvc_md5(path: str | Path) -> str | None:
    """DVC's md5 of a file, or of a folder (``<md5>.dir`` over its listing); None if it does not exist."""
    path = Path(path)
    if path.is_file():
        return _file_md5(path)
    if not path.is_dir():
        return None
    # DVC 3 hashes a folder as the JSON list of its files' {md5, relpath}, sorted by relpath.
    files = sorted((f.relative_to(path).as_posix(), f) for f in path.rglob("*") if f.is_file())
    listing = [{"md5": _file_md5(f), "relpath": relpath} for relpath, f in files]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def _file_md5(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def _dvc(dvc: str, command: str, pin_file: Path, *options: str) -> str:
    """Run ``dvc <command> <options> <pin_file>`` in the pin file's folder; its output, or DataError."""
    cmd = [dvc, command, *options, str(pin_file)]
    try:
        result = subprocess.run(cmd, cwd=pin_file.parent, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise DataError(f"cannot run {dvc!r} ({exc}); install DVC (`make setup`)") from exc
    if result.returncode != 0:
        raise DataError(f"`dvc {command} {pin_file.name}` failed: {result.stderr.strip()}; run it by hand to see why")
    return result.stdout


def main() -> int:
    dest = resolve_path(load_params().data.fashion_mnist_dir)
    try:
        source = obtain_fashion_mnist(dest, report=lambda message: print(message, file=sys.stderr))
        verify_fashion_mnist(dest)
        dvc = shutil.which("dvc")
        pin = check_pin(dvc) if dvc and PIN_FILE.exists() else "not checked (dvc not installed)"
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
    print(f"Fashion-MNIST in {shown}: {source}; content verified; pin {pin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
