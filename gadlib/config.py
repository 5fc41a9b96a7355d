"""Reads and validates ``params.yaml``: the one edge where configuration enters the project.

Every stage calls :func:`load_params` first, so an unknown key, a wrong type or a value out of range
stops the run before any work, with one error that names the key, the value and what is allowed.
Library functions never read the file; they take the plain values this module returns.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from gadlib.dataset_names import DATASETS, DOGS_VS_CATS_CLASSES, FASHION_MNIST_CLASSES
from gadlib.paths import PARAMS_FILE, ROOT

ARCHITECTURES = ("resnet18", "vgg16", "small_cnn")
METHODS = ("IntegratedGradients", "Saliency", "InputXGradient", "GuidedBackprop", "SmoothGrad")
STRATEGIES = ("pair", "one_vs_all", "split")
N_CLASSES = {"fashion_mnist": len(FASHION_MNIST_CLASSES), "dogs_vs_cats": len(DOGS_VS_CATS_CLASSES),
             "cub200": 200}
CLASS_SELECTORS = {
    "fashion_mnist": f"{list(FASHION_MNIST_CLASSES)} or ids 0-9",
    "dogs_vs_cats": f"{list(DOGS_VS_CATS_CLASSES)} or ids 0-1",
    "cub200": "a class name from classes.txt, an id 1-200, or {name: <label>, ids: [first, last]}",
}
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(ValueError):
    """params.yaml has an unknown key, a wrong type or a value out of range."""


@dataclass(frozen=True)
class Field:
    """One key of params.yaml: its type(s), a check on the value, and what is allowed (for errors).

    A bool is accepted only where ``bool`` is one of the types (YAML's true is not the integer 1).
    """

    types: tuple
    check: Callable[[Any], bool] = lambda v: True
    allowed: str = ""
    required: bool = True
    default: Any = None


def _num(check: Callable[[float], bool], allowed: str) -> Field:
    return Field((int, float), lambda v: math.isfinite(v) and check(v), allowed)


def _int(minimum: int, maximum: int | None = None, null: bool = False) -> Field:
    """An integer >= minimum (and <= maximum); with ``null`` also None."""
    allowed = f"an integer in [{minimum}, {maximum}]" if maximum is not None else f"an integer >= {minimum}"
    return Field((int, type(None)) if null else (int,),
                 lambda v: v is None or (v >= minimum and (maximum is None or v <= maximum)),
                 allowed + (" or null" if null else ""))


def _choice(options) -> Field:
    return Field((str,), lambda v: v in options, f"one of {list(options)}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _increasing_positive(values: list) -> bool:
    return (len(values) > 0 and all(_is_number(v) and v > 0 for v in values)
            and all(a < b for a, b in zip(values, values[1:], strict=False)))


def _distinct_methods(values: list) -> bool:
    return len(values) > 0 and all(m in METHODS for m in values) and len(set(values)) == len(values)


_FRACTION = _num(lambda v: 0 < v < 0.5, "a number in (0, 0.5)")
_POSITIVE = _num(lambda v: v > 0, "a number > 0")
_QUANTILE = _num(lambda v: 0 < v < 1, "a number strictly between 0 and 1")
_TAU = _num(lambda v: 0 < v <= 1, "a number in (0, 1]")
_FLAG = Field((bool,), allowed="true or false")
_THRESHOLD_MODE = _choice(("quantile", "fraction_of_max"))

SCHEMA: dict[str, Any] = {
    "seed": _int(0),
    "data": {
        "fashion_mnist_dir": Field((str,), lambda v: len(v) > 0, "a folder path"),
        "val_fraction": _FRACTION,
        "test_fraction": _FRACTION,
        "max_train_per_class": _int(2, null=True),
        "max_test_per_class": _int(1, null=True),
    },
    "experiments": Field((dict,), lambda v: len(v) > 0, "a non-empty mapping of experiment name -> settings"),
    "classifier": {
        "epochs": _int(1),
        "batch_size": _int(1),
        "lr": _POSITIVE,
        "patience": _int(1, null=True),
        "pretrained": _FLAG,
    },
    "support": {
        "alphas": Field((list,), _increasing_positive,
                        "a non-empty, strictly increasing list of positive numbers (K = its length >= 1)"),
        "alpha_scale": _POSITIVE,
        "init": _choice(("chained", "original")),
        "epochs": _int(1),
        "lr": _POSITIVE,
        "batch_size": _int(1),
    },
    "attribution": {
        "methods": Field((list,), _distinct_methods,
                         f"a non-empty list of distinct names from {list(METHODS)}"),
        "n_images": _int(1),
        "n_steps": _int(2),
        "internal_batch_size": _int(1),
        "batch_size": _int(1),
        "importance": _choice(("abs", "positive")),
        "threshold_mode": _THRESHOLD_MODE,
        "q": _QUANTILE,
        "tau": _TAU,
        "min_agreement": _int(1, null=True),  # null: kept in every map
        "fast": _FLAG,
    },
    "regions": {
        "threshold_mode": _THRESHOLD_MODE,
        "q": _QUANTILE,
        "tau": _TAU,
        "dilation": _int(0),
        "min_pixels": _int(1),
    },
    "sensitivity": {
        "fill": _choice(("black", "mean", "blur")),
        "score": _choice(("logit", "margin")),
        "blur_sigma": _POSITIVE,
    },
    "figures": {
        "n_examples": _int(1),
    },
}

EXPERIMENT_SCHEMA: dict[str, Field] = {
    "dataset": _choice(DATASETS),
    "data_dir": Field((str,), lambda v: len(v) > 0, "the dataset's folder, relative to the repository root"),
    "classes": Field((list, str), lambda v: v == "all" or (isinstance(v, list) and len(v) >= 2),
                     "'all' or a list of at least two class names, ids or {name, ids: [first, last]} groups"),
    "architecture": _choice(ARCHITECTURES),
    "image_size": _int(16, 512),
    "strategy": _choice(STRATEGIES),
    "target_classes": Field((list,), lambda v: len(v) >= 1, "a non-empty list of class names (one_vs_all)",
                            required=False),
    "groups": Field((list, str), lambda v: v == "auto" or (isinstance(v, list) and len(v) == 2),
                    "'auto' (2-means over class-mean logits) or two lists of class names (split)",
                    required=False, default="auto"),
}


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    """Read and validate params.yaml; return it as plain nested dicts and lists.

    Raises
    ------
    ConfigError naming the key, the value found and what is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist; copy params.yaml from the repository")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    validate_params(params, source=str(path))
    return params


def validate_params(params: Any, source: str = "params.yaml") -> None:
    """Check every key of ``params`` against :data:`SCHEMA`; raise :class:`ConfigError` on the first problem.

    Optional experiment keys that are absent are filled in with their defaults.
    """
    _check_section(params, SCHEMA, prefix="", source=source)
    for name, exp in params["experiments"].items():
        _check_experiment(name, exp, source)
    m = params["attribution"]["min_agreement"]
    k_plus_1 = len(params["support"]["alphas"]) + 1
    if m is not None and m > k_plus_1:
        raise ConfigError(f"{source}: 'attribution.min_agreement' = {m} exceeds the number of maps "
                          f"K + 1 = {k_plus_1}; use at most {k_plus_1} or null")


def _check_section(values: Any, schema: dict, prefix: str, source: str) -> None:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {where} must be a mapping; got {values!r}")
    unknown = sorted(set(values) - set(schema), key=str)
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}'; "
                          f"allowed keys here: {sorted(schema)}")
    for key, spec in schema.items():
        full = f"{prefix}{key}"
        if isinstance(spec, Field) and not spec.required and values.get(key, spec.default) == spec.default:
            values[key] = spec.default  # absent or explicitly the default: validating twice gives the same
            continue
        if key not in values:
            raise ConfigError(f"{source}: missing key '{full}'; add it (the repository's params.yaml "
                              f"shows every key with a comment)")
        if isinstance(spec, dict):
            _check_section(values[key], spec, prefix=f"{full}.", source=source)
        else:
            _check_value(full, values[key], spec, source)


def _check_value(key: str, value: Any, spec: Field, source: str) -> None:
    ok = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
    if not ok or not spec.check(value):
        raise ConfigError(f"{source}: '{key}' = {value!r} is not allowed; expected {spec.allowed}")


def _check_experiment(name: Any, exp: Any, source: str) -> None:
    if not (isinstance(name, str) and EXPERIMENT_NAME.fullmatch(name)):
        raise ConfigError(f"{source}: experiment name {name!r} is not allowed; it names folders, so use "
                          f"letters, digits, '_' and '-' only")
    _check_section(exp, EXPERIMENT_SCHEMA, prefix=f"experiments.{name}.", source=source)
    key, classes, dataset = f"experiments.{name}.classes", exp["classes"], exp["dataset"]
    if isinstance(classes, list):
        for cls in classes:
            if not _is_class_selector(dataset, cls):
                raise ConfigError(f"{source}: '{key}' has {cls!r}, which is not a {dataset} class; "
                                  f"allowed: {CLASS_SELECTORS[dataset]}")
        hashable = [repr(c) for c in classes]
        if len(set(hashable)) != len(hashable):
            raise ConfigError(f"{source}: '{key}' = {classes!r} names a class twice; list each class once")
    n_classes = len(classes) if isinstance(classes, list) else N_CLASSES[dataset]
    if exp["strategy"] == "pair" and n_classes != 2:
        raise ConfigError(f"{source}: 'experiments.{name}.strategy' = 'pair' needs exactly two classes; "
                          f"got classes {classes!r}. Use one_vs_all or split for more")
    if exp["strategy"] == "one_vs_all" and not exp.get("target_classes"):
        raise ConfigError(f"{source}: 'experiments.{name}.target_classes' is required with strategy "
                          f"one_vs_all; give a non-empty list of class names")


def _is_class_selector(dataset: str, cls: Any) -> bool:
    """Whether ``cls`` can name a class of ``dataset`` (CUB names are checked against classes.txt later)."""
    is_int = isinstance(cls, int) and not isinstance(cls, bool)
    if dataset == "fashion_mnist":
        return cls in FASHION_MNIST_CLASSES or (is_int and 0 <= cls < len(FASHION_MNIST_CLASSES))
    if dataset == "dogs_vs_cats":
        return cls in DOGS_VS_CATS_CLASSES or (is_int and 0 <= cls < len(DOGS_VS_CATS_CLASSES))
    if isinstance(cls, dict):
        ids = cls.get("ids")
        return (set(cls) == {"name", "ids"} and isinstance(cls["name"], str) and isinstance(ids, list)
                and len(ids) == 2 and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
                and 1 <= ids[0] <= ids[1] <= N_CLASSES["cub200"])
    return (isinstance(cls, str) and cls.strip() != "") or (is_int and 1 <= cls <= N_CLASSES["cub200"])


def experiment_names(params: dict) -> list[str]:
    """Names of the experiments, in file order."""
    return list(params["experiments"])


def resolve_path(path: str | Path) -> Path:
    """A path from params.yaml, relative to the repository root unless absolute."""
    path = Path(path)
    return path if path.is_absolute() else ROOT / path
