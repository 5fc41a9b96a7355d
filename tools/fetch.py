"""Obtain the embedded Fashion-MNIST raw files and check them against their pin in ``data.dvc``.

Run as ``python -m tools.fetch`` (``make data``). Raw files that are already present are never
overwritten; a raw file that differs from its pin stops the run here, before it feeds the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from gadlib.common.atomic import atomic_path
from gadlib.data.datasets import FASHION_MNIST_FILES, DataError, verify_fashion_mnist
from gadlib.project.params import load_params, resolve_path
from gadlib.project.paths import project_root

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
APT_LOCK_TIMEOUT_SECONDS = 120  # how long apt waits for a dpkg lock that another apt process holds


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


def _copy_atomically(source: Path, target: Path) -> None:
    # An interrupted copy must not leave a partial file: a present file is never overwritten later.
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def check_pin(dvc: str = "dvc", pin_file: str | Path = "data.dvc") -> str:
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
    root = project_root()
    pin_file = root / "data.dvc"
    dest = resolve_path(load_params().data.fashion_mnist_dir)
    try:
        source = obtain_fashion_mnist(dest, report=lambda message: print(message, file=sys.stderr))
        verify_fashion_mnist(dest)
        dvc = shutil.which("dvc")
        pin = check_pin(dvc, pin_file) if dvc and pin_file.exists() else "not checked (dvc not installed)"
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = dest.relative_to(root) if dest.is_relative_to(root) else dest
    print(f"Fashion-MNIST in {shown}: {source}; content verified; pin {pin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
