"""Every stage of dvc.yaml depends on all the code it runs, so `dvc repro` never reuses a stale
output, and on no drawing code unless it draws: recolouring a figure re-runs the figures stage only.

For each stage, the gadlib and tools modules its command and its notebook import are followed
through the static import graph (every ``import`` statement of every module, at any depth,
including the packages' ``__init__``); each module's file must lie under one of the stage's ``deps``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from gadlib import _EXPORTS

ROOT = Path(__file__).resolve().parents[2]

DVC_FILE = ROOT / "dvc.yaml"
PACKAGES = ("gadlib", "tools")  # the code of this repository that stages run
DRAWING = ("gadlib/plots.py", "gadlib/project/figures.py")  # code that only draws


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The source file of a gadlib module or package, or None for a name that is not one."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(source: str, current: str = "") -> set[str]:
    """gadlib and tools modules a piece of code imports (absolute and relative imports, any depth).

    ``from gadlib import GAD`` counts the module that defines ``GAD`` (gadlib's lazy exports)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = current.split(".")[: -node.level] if current else []
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            for alias in node.names:
                found.add(f"{base}.{alias.name}")  # `from gadlib.project import params` is a module
                if base == "gadlib" and alias.name in _EXPORTS:
                    found.add(_EXPORTS[alias.name])
    return {name for name in found if name.split(".")[0] in PACKAGES}


def closure(modules: set[str], root: Path = ROOT) -> set[Path]:
    """Source files of the given gadlib modules, their parent packages, and everything they import."""
    files: set[Path] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            path = module_file(".".join(parts[:depth]), root)
            if path is None or path in files:
                continue
            files.add(path)
            package = ".".join(parts[:depth]) if path.name == "__init__.py" else ".".join(parts[:depth])
            todo.extend(imported_modules(path.read_text(), package))
    return files


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return "\n".join(line for cell in code for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))


def stages(dvc_file: Path = DVC_FILE) -> dict[str, tuple[str, list[str]]]:
    """Stage name -> (command, deps), with ``foreach`` stages taken once (their ``${...}`` kept)."""
    spec = yaml.safe_load(dvc_file.read_text())["stages"]
    return {name: (stage.get("do", stage)["cmd"], stage.get("do", stage)["deps"]) for name, stage in spec.items()}


def code_run_by(cmd: str, root: Path = ROOT) -> set[Path]:
    """The files a stage command runs: its ``-m`` module and its notebook, with their imports."""
    modules = set(re.findall(r"-m\s+((?:gadlib|tools)[\w.]*)", cmd))
    for notebook in re.findall(r"(?<!\S)(notebooks/[^\s$]+\.ipynb)", cmd):  # the input, not the output
        modules |= imported_modules(notebook_code(root / notebook))
    return closure(modules, root)


def uncovered(cmd: str, deps: list[str], root: Path = ROOT) -> list[str]:
    """The gadlib files the command runs that no dependency covers (a file, or a folder above it)."""
    dep_paths = [(root / dep).resolve() for dep in deps if "${" not in dep]
    return sorted(
        str(path.relative_to(root))
        for path in code_run_by(cmd, root)
        if not any(path == dep or dep in path.parents for dep in dep_paths)
    )


@pytest.mark.parametrize("stage", list(stages()))
def test_every_module_a_stage_runs_is_a_dependency(stage):
    cmd, deps = stages()[stage]
    assert code_run_by(cmd), f"stage {stage}: found no gadlib code in {cmd!r}"
    missing = uncovered(cmd, deps)
    assert not missing, f"stage {stage} runs {missing} but dvc.yaml does not list them (or a folder above) in its deps"


@pytest.mark.parametrize("stage", [name for name in stages() if name != "figures"])
def test_only_the_figures_stage_depends_on_drawing_code(stage):
    cmd, deps = stages()[stage]
    runs = {str(path.relative_to(ROOT)) for path in code_run_by(cmd)}
    for drawing in DRAWING:
        assert drawing not in runs, f"stage {stage} computes, yet its notebook imports {drawing}"
        covered = drawing in deps or any(drawing.startswith(dep + "/") for dep in deps)
        assert not covered, f"stage {stage} would re-run when a figure of {drawing} is recoloured"


def test_the_figures_stage_draws_with_the_shared_drawing_code():
    cmd, deps = stages()["figures"]
    assert all(ROOT / drawing in code_run_by(cmd) and drawing in deps for drawing in DRAWING)


def test_every_stage_runs_its_notebook_through_the_runner():
    for name, (cmd, deps) in stages().items():
        assert cmd.startswith("python -m tools.run_notebook notebooks/"), name
        assert "tools/run_notebook.py" in deps, name


def test_a_forgotten_dependency_is_found(tmp_path):
    # the check itself can fail: drop one folder from a stage's deps and it names what is now uncovered
    cmd, deps = stages()["attribute"]
    assert "gadlib/method" in deps
    missing = uncovered(cmd, [d for d in deps if d != "gadlib/method"])
    assert "gadlib/method/gad.py" in missing and "gadlib/method/batched.py" in missing


def test_a_new_import_without_a_dependency_is_found(tmp_path):
    # copies in which the prepare notebook, then a module it imports, start importing more
    import shutil

    for folder in ("gadlib", "tools", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    cmd, deps = stages()["prepare"]
    assert uncovered(cmd, deps, tmp_path) == []
    notebook = tmp_path / "notebooks" / "01_prepare.ipynb"
    cells = json.loads(notebook.read_text())
    cells["cells"].append({"cell_type": "code", "metadata": {}, "source": ["from gadlib import plots"], "outputs": []})
    notebook.write_text(json.dumps(cells))
    assert DRAWING[0] in uncovered(cmd, deps, tmp_path)
    shutil.copy(ROOT / "notebooks" / "01_prepare.ipynb", notebook)
    module = tmp_path / "gadlib" / "project" / "params.py"
    module.write_text(module.read_text() + "\nfrom gadlib.evaluation import regions  # noqa\n")
    assert "gadlib/evaluation/regions.py" in uncovered(cmd, deps, tmp_path)
