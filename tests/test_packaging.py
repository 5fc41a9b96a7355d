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

from tests.fixtures import ROOT

SUBPACKAGES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts[:-1]) for p in (ROOT / "gadlib").rglob("__init__.py")
)


def test_every_subpackage_is_found():
    assert {
        "gadlib",
        "gadlib.method",
        "gadlib.evaluation",
        "gadlib.project",
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
        "import gadlib.method.gad, gadlib.evaluation.table, gadlib.project.params; print(gadlib.__file__)"
    )
    result = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(Path(target)), result.stdout

    # installed, gadlib finds the project it runs in (a clone elsewhere), not the one it was built from
    clone = tmp_path / "clone"
    (clone / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", clone / "params.yaml")
    (clone / "dvc.yaml").write_text("stages: {}\n")
    code = (
        "from gadlib.project.params import load_params; from gadlib.project.paths import project_root; "
        "print(project_root(), load_params().experiment_names[0])"
    )
    found = subprocess.run([python, "-c", code], cwd=clone / "notebooks", env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [str(clone.resolve()), "tshirt_vs_shirt"]
    outside = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (
        "ProjectNotFoundError: no GAD project here" in outside.stderr and "params.yaml and dvc.yaml" in outside.stderr
    )


def test_the_main_names_are_exported_lazily():
    code = (
        "import sys, gadlib; assert 'torch' not in sys.modules, 'import gadlib loaded torch'; "
        "from gadlib import GAD, evaluate_maps, train_support_models; "
        "print(GAD.__module__, evaluate_maps.__module__, train_support_models.__module__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["gadlib.method.gad", "gadlib.evaluation.table", "gadlib.method.support"]


# Declared dependencies the lock replaces or leaves out on purpose (make installs it with --no-deps):
# quantus declares opencv-python, whose GUI build needs the system's libGL; the headless build provides
# the same cv2 module. cachetools serves only Quantus's TensorFlow model wrapper.
LOCK_SUBSTITUTES = {"opencv-python": "opencv-python-headless", "cachetools": None}


def test_the_lock_holds_every_dependency_of_what_it_pins():
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = ROOT / "requirements.lock"
    pinned = {canonicalize_name(line.split("==")[0]) for line in lock.read_text().splitlines() if "==" in line}
    missing = []
    for name in sorted(pinned):
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # an environment other than the lock's: nothing to read
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue  # an optional extra, or another platform's
            needed = canonicalize_name(requirement.name)
            if needed in LOCK_SUBSTITUTES:
                substitute = LOCK_SUBSTITUTES[needed]
                assert substitute is None or substitute in pinned, f"{substitute} (for {name}) is not pinned"
            elif needed not in pinned:
                missing.append(f"{name} needs {requirement}")
    assert not missing, "requirements.lock lacks: " + "; ".join(missing)


def test_quantus_is_pinned_alike_in_the_lock_and_the_conda_environment():
    lock = (ROOT / "requirements.lock").read_text()
    environment = (ROOT / "environment.yml").read_text()
    assert "quantus==0.6.0" in lock and "quantus==0.6.0" in environment
    assert '"quantus>=0.6,<0.7"' in (ROOT / "pyproject.toml").read_text()


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
