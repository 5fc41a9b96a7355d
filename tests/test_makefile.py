"""The make targets people type, read with `make -n` (printed, not run): nothing is installed or started."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_dry_run(target: str, tmp_path: Path, uid: int | None = None) -> str:
    """The commands ``make <target>`` would run, as a user with ``uid`` (a stand-in ``id`` on PATH)."""
    env = dict(os.environ)
    if uid is not None:
        fake = tmp_path / f"uid{uid}"
        fake.mkdir()
        (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (fake / "id").chmod(0o755)
        env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    # -o: the venv counts as made, so the dry run prints only the target's own commands
    result = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", target], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_lab_starts_as_root_and_as_a_user_with_the_projects_kernel(tmp_path):
    as_root, as_user = make_dry_run("lab", tmp_path, uid=0), make_dry_run("lab", tmp_path, uid=1000)
    for commands in (as_root, as_user):
        assert "ipykernel install --sys-prefix --name gadlib" in commands
        assert "--MultiKernelManager.default_kernel_name=gadlib" in commands
    assert "jupyter lab --allow-root" in as_root
    assert "--allow-root" not in as_user


def test_the_notebooks_open_with_the_kernel_make_lab_installs():
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        kernelspec = json.loads(notebook.read_text())["metadata"]["kernelspec"]
        assert kernelspec["name"] == "gadlib", f"{notebook.name} opens with kernel {kernelspec['name']!r}"


def test_shell_activates_the_venv(tmp_path):
    assert ".venv/bin/activate" in make_dry_run("shell", tmp_path)


def test_compare_prints_the_headline_table(tmp_path):
    assert "python -m tools.compare" in make_dry_run("compare", tmp_path)


def test_repro_records_the_timings_after_the_pipeline(tmp_path):
    commands = make_dry_run("repro", tmp_path)
    assert commands.index("dvc repro") < commands.index("python -m tools.timings")
