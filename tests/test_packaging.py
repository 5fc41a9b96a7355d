"""A non-editable install ships every subpackage: built as a wheel, installed into a clean venv,
imported from there (not from this checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from gadlib.pipeline.paths import ROOT

SUBPACKAGES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts[:-1]) for p in (ROOT / "gadlib").rglob("__init__.py")
)


def test_every_subpackage_is_found():
    assert {
        "gadlib",
        "gadlib.method",
        "gadlib.evaluation",
        "gadlib.pipeline",
        "gadlib.models",
        "gadlib.data",
        "gadlib.common",
    } <= set(SUBPACKAGES)


def test_a_wheel_installed_into_a_clean_venv_imports_every_subpackage(tmp_path):
    # built from a copy of the sources, so no build/ folder of an earlier build can fill the gaps
    source = tmp_path / "source"
    shutil.copytree(ROOT / "gadlib", source / "gadlib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    target = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # pip of this interpreter installs the wheel (no deps) into the clean venv's site-packages
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            target,
            *map(str, wheels.glob("gadlib-*.whl")),
        ],
        check=True,
        capture_output=True,
    )
    # dependencies (torch, captum, ...) from this environment, but not gadlib: PYTHONPATH does not
    # run the .pth file of this environment's editable install, and the current folder is elsewhere
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    code = (
        "import importlib, gadlib; "
        f"[importlib.import_module(m) for m in {SUBPACKAGES!r}]; "
        "import gadlib.method.gad, gadlib.evaluation.table, gadlib.pipeline.stage; print(gadlib.__file__)"
    )
    result = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(Path(target)), result.stdout


def test_the_main_names_are_exported_lazily():
    code = (
        "import sys, gadlib; assert 'torch' not in sys.modules, 'import gadlib loaded torch'; "
        "from gadlib import GAD, evaluate_maps, train_support_models; "
        "print(GAD.__module__, evaluate_maps.__module__, train_support_models.__module__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["gadlib.method.gad", "gadlib.evaluation.table", "gadlib.method.support"]


def test_license_and_citation_agree_with_the_package():
    import tomllib

    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # an SPDX expression (PEP 639), not the deprecated table
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert {"cff-version", "message", "title", "authors"} <= set(citation)  # CFF 1.2.0's required keys
    assert citation["type"] == "software" and citation["license"] == project["license"]
    assert citation["version"] == project["version"]
    paper = citation["preferred-citation"]
    assert paper["type"] == "article" and "2401.14434" in paper["doi"]
    assert paper in citation["references"]
