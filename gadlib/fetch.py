"""Obtain the embedded Fashion-MNIST raw files and check them against their pin in ``data.dvc``.

Run as ``python -m gadlib.fetch`` (``make data``). Raw files that are already present are never
overwritten; a raw file that differs from its pin stops the run here, before it feeds the pipeline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from gadlib.config import load_params, resolve_path
from gadlib.data import DataError, obtain_fashion_mnist, verify_fashion_mnist
from gadlib.paths import ROOT

PIN_FILE = ROOT / "data.dvc"


def check_pin(dvc: str = "dvc") -> str:
    """Compare the raw data with ``data.dvc``; return "clean", or raise if a raw file changed.

    On a fresh clone the files match their pin but are not yet in DVC's cache; that case is
    committed to the cache (the pin is unchanged, since the hashes match).
    """
    result = subprocess.run([dvc, "status", "--json", str(PIN_FILE)], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise DataError(f"`dvc status data.dvc` failed: {result.stderr.strip()}")
    status = json.loads(result.stdout or "{}")
    changes = {out: state for entry in status.get("data.dvc", []) for out, state in
               entry.get("changed outs", {}).items()}
    if not changes:
        return "clean"
    if set(changes.values()) == {"not in cache"}:
        subprocess.run([dvc, "commit", "--force", "--quiet", str(PIN_FILE)], cwd=ROOT, check=True)
        return "clean (added to DVC's cache)"
    raise DataError(f"raw data differs from its pin in data.dvc: {changes}. Restore it with "
                    f"`dvc checkout data.dvc`, or delete the folder and run `make data`")


def main() -> int:
    params = load_params()
    dest = resolve_path(params["data"]["fashion_mnist_dir"])
    try:
        source = obtain_fashion_mnist(dest)
        verify_fashion_mnist(dest)
        dvc = shutil.which("dvc")
        pin = check_pin(dvc) if dvc and PIN_FILE.exists() else "not checked (dvc not installed)"
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST in {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}: "
          f"{source}; content verified; pin {pin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
