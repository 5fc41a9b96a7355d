"""Test a function that a stage notebook defines for itself, without running the notebook.

A function only one notebook uses lives in that notebook. :func:`notebook_function` takes its
definition from the notebook's code cells and runs it with the notebook's own import statements,
so a unit test exercises exactly the code the pipeline runs; ``names`` supplies the notebook-level
variables the function reads (``params``, ``prepared``, ...).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from tests.fixtures import ROOT


def notebook_source(notebook: str | Path) -> str:
    """The code cells of a notebook as one Python source (IPython magics and shell lines dropped)."""
    cells = json.loads((ROOT / notebook).read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return "\n".join(line for cell in code for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))


def notebook_function(notebook: str | Path, name: str, **names: Any):
    """The function ``name`` defined at the top level of ``notebook``, with the notebook's imports
    and ``names`` as its globals (and every other function the notebook defines, which it may call)."""
    tree = ast.parse(notebook_source(notebook))
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    constants = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
    ]
    if name not in {f.name for f in functions}:
        raise LookupError(f"{notebook} defines no function {name!r}; it defines {sorted(f.name for f in functions)}")
    namespace: dict[str, Any] = {"__name__": f"notebook:{Path(notebook).stem}"}
    exec(
        compile(ast.Module(body=[*imports, *constants, *functions], type_ignores=[]), str(notebook), "exec"), namespace
    )
    namespace.update(names)
    return namespace[name]
