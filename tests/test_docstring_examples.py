"""The examples in the public docstrings (Captum's style, ``>>>``) run and print what they say."""

import doctest
import importlib

import pytest

import gadlib

MODULES = (
    "gadlib.method.distancing",
    "gadlib.method.support",
    "gadlib.method.fusion",
    "gadlib.method.gad",
    "gadlib.evaluation.regions",
    "gadlib.evaluation.sensitivity",
    "gadlib.evaluation.table",
    "gadlib.evaluation.quantus_adapter",
)
WITH_EXAMPLES = (
    "GAD",
    "train_support_models",
    "support_fidelity",
    "evaluate_maps",
    "hull_polygons",
    "hull_complexity",
    "occlusion_sensitivity",
    "fuse_maps",
    "distancing_targets",
)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    finder, report = doctest.DocTestFinder(), []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [test for test in finder.find(importlib.import_module(module)) if test.examples]
    assert tests, f"{module} has no docstring example"
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_the_public_functions_carry_examples(name):
    doc = getattr(gadlib, name).__doc__
    assert "Examples\n    --------" in doc and ">>> " in doc, f"{name} has no example"
