"""Reads and validates ``params.yaml``: the one edge where configuration enters the project.

Every stage notebook calls :func:`load_params` in its first code cell, so an unknown key, a wrong
type or a value out of range stops the run before any work, with one line that names the key, the
value and what is allowed.
The result is a typed, read-only :class:`Params` (pydantic models: unknown keys forbidden, strict
types, bounds); the stages read its fields and pass plain values on to the library.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gadlib import choices
from gadlib.project.paths import project_root

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9_-]+")
CLASS_SELECTORS = {
    "fashion_mnist": f"{list(choices.FASHION_MNIST_CLASSES)} or ids 0-9",
    "dogs_vs_cats": f"{list(choices.DOGS_VS_CATS_CLASSES)} or ids 0-1",
    "cub200": "a class name from classes.txt, an id 1-200, or {name: <label>, ids: [first, last]}",
}
N_CLASSES = {
    "fashion_mnist": len(choices.FASHION_MNIST_CLASSES),
    "dogs_vs_cats": len(choices.DOGS_VS_CATS_CLASSES),
    "cub200": choices.CUB200_CLASS_COUNT,
}


class ConfigError(ValueError):
    """params.yaml has an unknown key, a wrong type or a value out of range."""


# YAML 1.2's floats (what DVC, through ruamel, writes and reads): an exponent needs no dot or sign
# (1e-09, 1e5), a leading dot is enough (.5). PyYAML follows YAML 1.1 and reads 1e-09 as a string.
YAML12_FLOAT = re.compile(
    r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[0-9][0-9_]*[eE][-+]?[0-9]+
    |\.(?:inf|Inf|INF))$
    |^\.(?:nan|NaN|NAN)$""",
    re.X,
)
_FLOAT_TAG = "tag:yaml.org,2002:float"


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that numbers are read as YAML 1.2 reads them (:data:`YAML12_FLOAT`).

    ``dvc exp run -S support.lr=1e-9`` writes ``lr: 1e-09``; DVC reads that as a number, and so
    does this loader, so the value the stages validate is the value DVC records for the experiment.
    """


ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ParamsLoader.add_implicit_resolver(_FLOAT_TAG, YAML12_FLOAT, list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """Parse YAML text (a params file) with :class:`ParamsLoader`: plain dicts, lists and scalars."""
    return yaml.load(text, Loader=ParamsLoader)  # safe: ParamsLoader is a SafeLoader


# Each field's description is what the error message says is allowed.
def _number(allowed: str, **bounds: float) -> Any:
    return Annotated[float, Field(allow_inf_nan=False, description=allowed, **bounds)]


def _integer(minimum: int, maximum: int | None = None, null: bool = False) -> Any:
    allowed = f"an integer in [{minimum}, {maximum}]" if maximum is not None else f"an integer >= {minimum}"
    kind = int | None if null else int
    return Annotated[kind, Field(ge=minimum, le=maximum, description=allowed + (" or null" if null else ""))]


def _choice(options: tuple[str, ...]) -> Any:
    return Annotated[Literal[options], Field(description=f"one of {list(options)}")]


Fraction = _number("a number in (0, 0.5)", gt=0, lt=0.5)
Positive = _number("a number > 0", gt=0)
Quantile = _number("a number strictly between 0 and 1", gt=0, lt=1)
Tau = _number("a number in (0, 1]", gt=0, le=1)
Flag = Annotated[bool, Field(description="true or false")]
ThresholdMode = _choice(choices.THRESHOLD_MODES)


class Section(BaseModel):
    """A mapping of params.yaml: unknown keys are errors, types are strict, values read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(Section):
    fashion_mnist_dir: Annotated[str, Field(min_length=1, description="a folder path")]
    val_fraction: Fraction
    test_fraction: Fraction
    max_train_per_class: _integer(2, null=True)
    max_test_per_class: _integer(1, null=True)


class Experiment(Section):
    dataset: _choice(choices.DATASETS)
    data_dir: Annotated[str, Field(min_length=1, description="the dataset's folder, relative to the repository root")]
    classes: Annotated[
        Literal["all"] | list[str | int | dict[str, Any]],
        Field(description="'all' or a list of at least two class names, ids or {name, ids: [first, last]} groups"),
    ]
    architecture: _choice(choices.ARCHITECTURES)
    image_size: _integer(16, 512)
    strategy: _choice(choices.STRATEGIES)
    target_classes: Annotated[
        list[str | int] | None, Field(min_length=1, description="a non-empty list of class names (one_vs_all)")
    ] = None
    groups: Annotated[
        Literal["auto"] | list[list[str | int]],
        Field(description="'auto' (2-means over class-mean logits) or two lists of class names (split)"),
    ] = "auto"

    @field_validator("classes")
    @classmethod
    def _at_least_two(cls, value):
        if isinstance(value, list) and len(value) < 2:
            raise ValueError("fewer than two classes")
        return value

    @field_validator("groups")
    @classmethod
    def _two_groups(cls, value):
        if isinstance(value, list) and len(value) != 2:
            raise ValueError("not two groups")
        return value


class ClassifierParams(Section):
    epochs: _integer(1)
    batch_size: _integer(1)
    lr: Positive
    schedule: _choice(choices.SCHEDULES)
    crop_padding: _integer(0)
    horizontal_flip: Flag
    patience: _integer(1, null=True)
    pretrained: Flag


class SupportParams(Section):
    alphas: Annotated[
        list[float],
        Field(
            min_length=1, description="a non-empty, strictly increasing list of positive numbers (K = its length >= 1)"
        ),
    ]
    alpha_scale: _number("a number >= 0 (0: no distancing)", ge=0)
    init: _choice(choices.INIT_MODES)
    epochs: _integer(1)
    lr: Positive
    batch_size: _integer(1)
    max_train_per_class: _integer(1, null=True)
    alpha0_control: Flag

    @field_validator("alphas")
    @classmethod
    def _increasing_positive(cls, values):
        if any(not (v > 0 and v != float("inf")) for v in values) or any(
            a >= b for a, b in zip(values, values[1:], strict=False)
        ):
            raise ValueError("not strictly increasing positive numbers")
        return values

    @property
    def alpha_schedule(self) -> list[float]:
        """The α schedule actually used: ``alphas`` times ``alpha_scale``."""
        return [a * self.alpha_scale for a in self.alphas]


class AttributionParams(Section):
    methods: Annotated[
        list[_choice(choices.METHODS)],
        Field(min_length=1, description=f"a non-empty list of distinct names from {list(choices.METHODS)}"),
    ]
    n_images: _integer(1)
    n_steps: _integer(2)
    internal_batch_size: _integer(1)
    batch_size: _integer(1)
    importance: _choice(choices.IMPORTANCE_MODES)
    threshold_mode: ThresholdMode
    q: Quantile
    tau: Tau
    min_agreement: _integer(1, null=True)  # null: kept in every map
    fast: Flag

    @field_validator("methods")
    @classmethod
    def _distinct(cls, values):
        if len(set(values)) != len(values):
            raise ValueError("a method is listed twice")
        return values


class RegionParams(Section):
    threshold_mode: ThresholdMode
    q: Quantile
    tau: Tau
    dilation: _integer(0)
    min_pixels: _integer(1)


class SensitivityParams(Section):
    fill: _choice(choices.FILLS)
    other_fills: Annotated[
        list[_choice(choices.FILLS)], Field(description=f"a list of distinct fills from {list(choices.FILLS)}")
    ]
    score: _choice(choices.SCORE_MODES)
    blur_sigma: Positive

    @field_validator("other_fills")
    @classmethod
    def _distinct(cls, values):
        if len(set(values)) != len(values):
            raise ValueError("a fill is listed twice")
        return values

    @property
    def fills(self) -> list[str]:
        """Every fill measured, the main one first."""
        return list(dict.fromkeys([self.fill, *self.other_fills]))


class StatisticsParams(Section):
    alpha: _number("a number strictly between 0 and 1", gt=0, lt=1)
    min_pairs: _integer(2)
    bootstrap_resamples: _integer(100)
    random_subset_draws: _integer(1)


class StandardMetricsParams(Section):
    n_images: _integer(0)


class FigureParams(Section):
    n_examples: _integer(1)


class Params(Section):
    """The whole of params.yaml, validated."""

    seed: _integer(0)
    data: DataParams
    experiments: Annotated[
        dict[str, Experiment], Field(min_length=1, description="a non-empty mapping of experiment name -> settings")
    ]
    classifier: ClassifierParams
    support: SupportParams
    attribution: AttributionParams
    regions: RegionParams
    sensitivity: SensitivityParams
    statistics: StatisticsParams
    standard_metrics: StandardMetricsParams
    figures: FigureParams

    @field_validator("experiments", mode="before")
    @classmethod
    def _folder_safe_names(cls, value):
        for name in value if isinstance(value, dict) else ():
            if not (isinstance(name, str) and EXPERIMENT_NAME.fullmatch(name)):
                raise PydanticCustomError(
                    "config",
                    "experiment name {name} is not allowed; it names folders, so use letters, digits, '_' and '-' only",
                    {"name": repr(name)},
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        for name, experiment in self.experiments.items():
            _check_experiment(name, experiment)
        m, k_plus_1 = self.attribution.min_agreement, len(self.support.alphas) + 1
        if m is not None and m > k_plus_1:
            raise _config_error(
                f"'attribution.min_agreement' = {m} exceeds the number of maps K + 1 = "
                f"{k_plus_1}; use at most {k_plus_1} or null"
            )
        return self

    @property
    def experiment_names(self) -> list[str]:
        """Names of the experiments, in file order."""
        return list(self.experiments)

    def experiment_or_first(self, name: str | None) -> str:
        """The experiment a notebook works on: ``name``, or the first in params.yaml when None."""
        if name is None:
            return self.experiment_names[0]
        if name not in self.experiments:
            raise ValueError(f"unknown experiment {name!r}; params.yaml defines {self.experiment_names}")
        return name


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate params.yaml (default: the project's, :func:`~gadlib.project.paths.project_root`).

    Raises
    ------
    ConfigError naming the file, the key, the value found and what is allowed, in one line.
    """
    path = project_root() / "params.yaml" if path is None else Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {path} does not exist; copy params.yaml from the repository")
    try:
        raw = read_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    return validate_params(raw, source=str(path))


def validate_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate plain nested dicts (as read from YAML) into :class:`Params`; raise :class:`ConfigError`
    describing the first problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping; got {raw!r}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc.errors()[0], raw)}") from None


def _describe(error: dict, raw: dict) -> str:
    """One sentence for a pydantic error: the dotted key, the value found and what is allowed."""
    if error["type"] == "config":
        return error["msg"]
    keys, value, model, field = [], raw, Params, None
    steps = iter(error["loc"])
    for step in steps:
        if model is None or step not in model.model_fields:
            if error["type"] == "extra_forbidden" and model is not None:
                key = ".".join([*keys, str(step)])
                return f"unknown key '{key}'; allowed keys here: {sorted(model.model_fields)}"
            break
        keys.append(step)
        field, value = model.model_fields[step], value.get(step) if isinstance(value, dict) else None
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if step == "experiments" and model is None:  # a mapping of name -> Experiment
            name = next(steps, None)
            if name is None or not isinstance(value, dict) or name not in value:
                break
            keys.append(name)
            value, model, field = value[name], Experiment, None
    key = ".".join(map(str, keys))
    if error["type"] == "missing":
        return f"missing key '{key}'; add it (the repository's params.yaml shows every key with a comment)"
    if error["type"] == "model_type" or field is None:
        return f"{key or 'the top level'} must be a mapping; got {value!r}"
    kind = f" ({_type_name(value)})" if error["type"].endswith("_type") else ""
    return f"'{key}' = {value!r}{kind} is not allowed; expected {field.description}"


def _type_name(value: Any) -> str:
    """'a str', 'an int', 'null': what a wrong value is, for error messages."""
    if value is None:
        return "null"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _config_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{message}", {"message": message})


def _check_experiment(name: str, experiment: Experiment) -> None:
    """The checks that need several keys at once: classes against the dataset, the strategy's needs."""
    key, classes, dataset = f"experiments.{name}.classes", experiment.classes, experiment.dataset
    if isinstance(classes, list):
        for cls in classes:
            if not _is_class_selector(dataset, cls):
                raise _config_error(
                    f"'{key}' has {cls!r}, which is not a {dataset} class; allowed: {CLASS_SELECTORS[dataset]}"
                )
        if len({repr(c) for c in classes}) != len(classes):
            raise _config_error(f"'{key}' = {classes!r} names a class twice; list each class once")
    n_classes = len(classes) if isinstance(classes, list) else N_CLASSES[dataset]
    if experiment.strategy == "pair" and n_classes != 2:
        raise _config_error(
            f"'experiments.{name}.strategy' = 'pair' needs exactly two classes; got classes "
            f"{classes!r}. Use one_vs_all or split for more"
        )
    if experiment.strategy == "one_vs_all" and not experiment.target_classes:
        raise _config_error(
            f"'experiments.{name}.target_classes' is required with strategy one_vs_all; "
            f"give a non-empty list of class names"
        )


def _is_class_selector(dataset: str, cls: Any) -> bool:
    """Whether ``cls`` can name a class of ``dataset`` (CUB names are checked against classes.txt later)."""
    is_int = isinstance(cls, int) and not isinstance(cls, bool)
    if dataset in ("fashion_mnist", "dogs_vs_cats"):
        names = choices.FASHION_MNIST_CLASSES if dataset == "fashion_mnist" else choices.DOGS_VS_CATS_CLASSES
        return cls in names or (is_int and 0 <= cls < len(names))
    if isinstance(cls, dict):
        ids = cls.get("ids")
        return (
            set(cls) == {"name", "ids"}
            and isinstance(cls["name"], str)
            and isinstance(ids, list)
            and len(ids) == 2
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            and 1 <= ids[0] <= ids[1] <= choices.CUB200_CLASS_COUNT
        )
    return (isinstance(cls, str) and cls.strip() != "") or (is_int and 1 <= cls <= choices.CUB200_CLASS_COUNT)


def resolve_path(path: str | Path, root: Path | None = None) -> Path:
    """A path from params.yaml, relative to the project folder unless absolute."""
    path = Path(path)
    return path if path.is_absolute() else (root or project_root()) / path
