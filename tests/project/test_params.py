"""params.yaml validation: each mistake gives one error naming the key, the value and what is allowed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gadlib.project import params as config
from gadlib.project.params import ConfigError, load_params, resolve_path, validate_params
from gadlib.project.paths import ExperimentPaths, ProjectNotFoundError, project_root, reports_dir
from tests.fixtures import ROOT

PARAMS_FILE = ROOT / "params.yaml"
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
FIRST = "experiments.tshirt_vs_shirt"


def test_the_repository_params_validate():
    params = load_params(PARAMS_FILE)
    assert params.seed == 0
    assert params.experiment_names == list(config.read_yaml(PARAMS_FILE.read_text())["experiments"])


def test_load_params_reads_the_project_s_params_by_default(project_dir):
    (project_dir / "params.yaml").write_text(re.sub(r"(?m)^seed: \d+", "seed: 5", PARAMS_FILE.read_text(), count=1))
    assert load_params().seed == 5  # the working project's file, not the repository's (seed 0)


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_the_profiles_validate(profile):
    load_params(profile)


def test_optional_experiment_keys_get_their_defaults(params):
    exp = validate_params(params).experiments["tshirt_vs_shirt"]
    assert exp.groups == "auto" and exp.target_classes is None


def test_validated_params_are_typed_and_read_only(params):
    validated = validate_params(params)
    assert isinstance(validated.support.lr, float) and validated.support.alphas == [0.5, 1.0, 1.5, 2.0, 2.5]
    with pytest.raises(ValueError, match="frozen"):
        validated.seed = 3


def set_key(params: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value


# (key, bad value, text the message must hold besides the key and the value)
BAD_VALUES = [
    ("seed", -1, "an integer >= 0"),
    ("seed", "0", "an integer >= 0"),
    ("data.val_fraction", 0.5, "a number in (0, 0.5)"),
    ("data.max_train_per_class", True, "an integer >= 2 or null"),
    ("classifier.epochs", 2.5, "an integer >= 1"),
    ("classifier.lr", "1e-3", "a number > 0"),  # quoted in the file: text, not a number
    ("classifier.lr", float("nan"), "a number > 0"),
    ("classifier.pretrained", "yes", "true or false"),
    ("support.alphas", [1.0, 0.5, 2.0], "strictly increasing"),
    ("support.alphas", [0.5, 0.5], "strictly increasing"),
    ("support.alphas", [-0.5, 1.0], "positive numbers"),
    ("support.alphas", [], "non-empty"),  # K = 0
    ("support.alphas", 1.0, "list"),
    ("support.init", "random", "one of ['chained', 'original']"),
    ("attribution.methods", ["Saliency", "LRP"], "IntegratedGradients"),
    ("attribution.methods", ["Saliency", "Saliency"], "distinct"),
    ("attribution.methods", [], "non-empty"),
    ("attribution.q", 1.0, "strictly between 0 and 1"),
    ("attribution.q", 0, "strictly between 0 and 1"),
    ("attribution.tau", 1.5, "(0, 1]"),
    ("regions.q", -0.1, "strictly between 0 and 1"),
    ("regions.dilation", -1, "an integer >= 0"),
    ("sensitivity.fill", "white", "one of ['black', 'mean', 'blur']"),
    (f"{FIRST}.architecture", "resnet50", "one of ['resnet18', 'vgg16', 'small_cnn']"),
    (f"{FIRST}.dataset", "mnist", "one of ['fashion_mnist', 'dogs_vs_cats', 'cub200']"),
    (f"{FIRST}.image_size", 8, "an integer in [16, 512]"),
    (f"{FIRST}.strategy", "one_vs_one", "one of ['pair', 'one_vs_all', 'split']"),
    (f"{FIRST}.classes", ["Shirt"], "at least two"),
    (f"{FIRST}.classes", "some", "'all' or a list"),
]


@pytest.mark.parametrize("key, value, allowed", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_a_bad_value_names_key_value_and_what_is_allowed(params, key, value, allowed):
    set_key(params, key, value)
    with pytest.raises(ConfigError) as err:
        validate_params(params)
    message = str(err.value)
    assert f"'{key}' = {value!r}" in message
    assert allowed in message


@pytest.mark.parametrize(
    "key, value, kind",
    [("support.lr", "1e-09", "a str"), ("seed", 1.5, "a float"), ("classifier.epochs", None, "null")],
)
def test_a_value_of_the_wrong_type_says_its_type(params, key, value, kind):
    set_key(params, key, value)
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}' = {re.escape(repr(value))} \({kind}\) is not allowed"):
        validate_params(params)


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-09", 1e-09),
        ("1e5", 1e5),
        (".5", 0.5),
        ("-.5e3", -500.0),
        ("1.5e3", 1500.0),  # YAML 1.1 (PyYAML) wants a sign in the exponent
        ("1.0e-04", 1e-4),
        ("0.003", 0.003),
        ("3", 3),
        ("-1", -1),
        ("1e", "1e"),
        ("e5", "e5"),
        ("1.2.3", "1.2.3"),
        ("null", None),
        ("true", True),
    ],
)
def test_params_files_read_numbers_as_yaml_1_2(text, value):
    read = config.read_yaml(f"x: {text}\n")["x"]
    assert read == value and type(read) is type(value)


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("support.lr=1e-9", ("support", "lr"), 1e-9),
        ("classifier.lr=3e-3", ("classifier", "lr"), 3e-3),
        ("support.alpha_scale=.5", ("support", "alpha_scale"), 0.5),
        ("attribution.q=0.95", ("attribution", "q"), 0.95),
        ("support.alphas=[0.5,1e1]", ("support", "alphas"), [0.5, 10.0]),
    ],
)
def test_values_written_by_dvc_exp_run_set_param_load_as_numbers(tmp_path, override, key, value):
    hydra = pytest.importorskip("dvc.utils.hydra")  # what `dvc exp run -S` calls to rewrite params.yaml
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_FILE.read_text())
    hydra.apply_overrides(str(path), [override])
    section, name = key
    assert getattr(getattr(load_params(path), section), name) == value


@pytest.mark.parametrize("key", ["colour", "data.fashion_mnist_path", "support.K", f"{FIRST}.epochs"])
def test_an_unknown_key_is_named(params, key):
    set_key(params, key, 1)
    with pytest.raises(ConfigError, match=rf"unknown key '{re.escape(key)}'; allowed keys here: \["):
        validate_params(params)


def test_a_missing_key_is_named(params):
    del params["attribution"]["q"]
    with pytest.raises(ConfigError, match="missing key 'attribution.q'"):
        validate_params(params)


def test_a_section_that_is_not_a_mapping(params):
    params["regions"] = [1, 2]
    with pytest.raises(ConfigError, match=r"regions must be a mapping; got \[1, 2\]"):
        validate_params(params)


@pytest.mark.parametrize(
    "dataset, classes, bad",
    [
        ("fashion_mnist", ["T-shirt/top", "Shirtt"], "'Shirtt'"),
        ("fashion_mnist", ["Shirt", 10], "10"),
        ("dogs_vs_cats", ["cat", "wolf"], "'wolf'"),
        ("cub200", [113, 201], "201"),
        ("cub200", [{"name": "sparrow", "ids": [113]}, 158], "{'name': 'sparrow', 'ids': [113]}"),
        ("cub200", [{"name": "sparrow", "ids": [133, 113]}, 158], "{'name': 'sparrow', 'ids': [133, 113]}"),
    ],
)
def test_a_class_not_in_the_dataset(params, dataset, classes, bad):
    params["experiments"]["tshirt_vs_shirt"].update(dataset=dataset, classes=classes)
    with pytest.raises(
        ConfigError,
        match=rf"'{FIRST}.classes' has {re.escape(bad)}, which is not a "
        rf"{dataset} class; allowed: ",
    ):
        validate_params(params)


def test_a_class_named_twice(params):
    params["experiments"]["tshirt_vs_shirt"]["classes"] = ["Shirt", "Shirt"]
    with pytest.raises(ConfigError, match="names a class twice"):
        validate_params(params)


def test_pair_strategy_needs_two_classes(params):
    params["experiments"]["tshirt_vs_shirt"]["classes"] = ["Shirt", "Coat", "Bag"]
    with pytest.raises(ConfigError, match=f"'{FIRST}.strategy' = 'pair' needs exactly two classes"):
        validate_params(params)
    # 'all' of Dogs vs. Cats is a pair; 'all' of Fashion-MNIST is not.
    params["experiments"]["tshirt_vs_shirt"].update(dataset="dogs_vs_cats", classes="all")
    validate_params(params)
    params["experiments"]["tshirt_vs_shirt"].update(dataset="fashion_mnist", classes="all")
    with pytest.raises(ConfigError, match="needs exactly two classes"):
        validate_params(params)


def test_one_vs_all_needs_target_classes(params):
    params["experiments"]["tshirt_vs_shirt"].update(classes=["Shirt", "Coat", "Bag"], strategy="one_vs_all")
    with pytest.raises(ConfigError, match=f"'{FIRST}.target_classes' is required"):
        validate_params(params)
    params["experiments"]["tshirt_vs_shirt"]["target_classes"] = ["Shirt"]
    validate_params(params)


def test_min_agreement_cannot_exceed_the_number_of_maps(params):
    params["support"]["alphas"] = [1.0, 2.0]
    params["attribution"]["min_agreement"] = 4
    with pytest.raises(ConfigError, match=r"'attribution.min_agreement' = 4 exceeds .* K \+ 1 = 3"):
        validate_params(params)
    params["attribution"]["min_agreement"] = 3
    validate_params(params)


@pytest.mark.parametrize("name", ["../escape", "with space", 7])
def test_experiment_names_must_be_folder_safe(params, name):
    params["experiments"][name] = params["experiments"].pop("tshirt_vs_shirt")
    with pytest.raises(ConfigError, match=f"experiment name {re.escape(repr(name))} is not allowed"):
        validate_params(params)


def test_no_experiments(params):
    params["experiments"] = {}
    with pytest.raises(ConfigError, match=r"'experiments' = \{\} is not allowed; expected a non-empty"):
        validate_params(params)


def test_load_params_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [0\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="the top level must be a mapping; got None"):
        load_params(tmp_path / "empty.yaml")


def test_load_params_names_the_file_in_errors(tmp_path):
    text = re.sub(r"classifier:\n  epochs: \d+", "classifier:\n  epochs: six", PARAMS_FILE.read_text(), count=1)
    (tmp_path / "params.yaml").write_text(text)
    where = re.escape(str(tmp_path / "params.yaml"))
    with pytest.raises(ConfigError, match=rf"{where}: 'classifier.epochs' = 'six'"):
        load_params(tmp_path / "params.yaml")


def test_resolve_path_is_relative_to_the_project(project_dir, monkeypatch):
    top = project_dir.resolve()
    assert resolve_path("data/fashion-mnist") == top / "data" / "fashion-mnist"
    (project_dir / "notebooks").mkdir()
    monkeypatch.chdir(project_dir / "notebooks")  # a notebook opened in JupyterLab runs here
    assert resolve_path("data/fashion-mnist") == top / "data" / "fashion-mnist"
    assert resolve_path("/elsewhere/x") == Path("/elsewhere/x")
    assert resolve_path("data/x", root=Path("/other/project")) == Path("/other/project/data/x")


# ------------------------------------------------------------------ where the project is
def make_project(folder: Path) -> Path:
    """A folder with the two files that mark a project: params.yaml and dvc.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copyfile(ROOT / name, folder / name)
    return folder.resolve()


@pytest.fixture
def no_dvc_root(monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)


def test_the_project_is_the_working_directory_or_a_folder_above_it(tmp_path, monkeypatch, no_dvc_root):
    top = make_project(tmp_path / "clone")
    deep = top / "reports" / "notebooks" / "tshirt_vs_shirt"
    deep.mkdir(parents=True)
    (top / "notebooks").mkdir()
    (top / "notebooks" / "params.yaml").write_text("seed: 1\n")  # params.yaml alone marks no project
    for folder in (top, top / "notebooks", deep):
        monkeypatch.chdir(folder)
        assert project_root() == top, folder
    monkeypatch.chdir(tmp_path)
    assert project_root(top / "notebooks") == top  # or from a given folder


def test_the_first_project_up_the_tree_is_the_one(tmp_path, monkeypatch, no_dvc_root):
    outer = make_project(tmp_path / "outer")
    inner = make_project(outer / "experiments" / "inner")
    monkeypatch.chdir(inner)
    assert project_root() == inner


def test_dvc_root_names_the_project(tmp_path, monkeypatch):
    top, other = make_project(tmp_path / "clone"), make_project(tmp_path / "other")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("DVC_ROOT", str(top))
    assert project_root() == top
    monkeypatch.chdir(other)  # $DVC_ROOT, which dvc sets for every stage, comes first
    assert project_root() == top
    assert ExperimentPaths("x").prepared == top / "artifacts" / "x" / "prepared.npz"


def test_outside_a_project_the_error_says_where_it_looked(tmp_path, monkeypatch, no_dvc_root):
    # gadlib itself lies in a project (this repository): that must not count.
    if any((folder / "params.yaml").is_file() and (folder / "dvc.yaml").is_file() for folder in tmp_path.parents):
        pytest.skip("pytest's temporary folder lies inside a project (--basetemp)")
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "params.yaml").write_text("seed: 0\n")
    monkeypatch.chdir(tmp_path / "nowhere")
    where = re.escape(str((tmp_path / "nowhere").resolve()))
    message = rf"no GAD project here: neither {where} nor a folder above it holds params.yaml and dvc.yaml"
    for call in (project_root, load_params, reports_dir, lambda: ExperimentPaths("x"), lambda: resolve_path("data")):
        with pytest.raises(ProjectNotFoundError, match=message):
            call()
    assert issubclass(ProjectNotFoundError, FileNotFoundError)


def test_paths_follow_the_project_not_the_import(tmp_path, monkeypatch, no_dvc_root):
    """gadlib was imported from this repository, with the repository as the working directory; a
    project elsewhere, then another, is where paths point once the working directory is there."""
    for name in ("first", "second"):
        top = make_project(tmp_path / name)
        monkeypatch.chdir(top)
        assert reports_dir() == top / "reports"
        paths = ExperimentPaths("tshirt_vs_shirt")
        assert paths.prepared == top / "artifacts" / "tshirt_vs_shirt" / "prepared.npz"
        assert paths.fidelity == top / "reports" / "experiments" / "tshirt_vs_shirt" / "fidelity.csv"
        assert paths.notebooks == top / "reports" / "notebooks" / "tshirt_vs_shirt"
    assert ExperimentPaths("x", root=tmp_path / "first").artifacts == tmp_path / "first" / "artifacts" / "x"


def test_an_installed_gadlib_works_on_any_project(tmp_path):
    """gadlib imported from a folder that is no project (as from site-packages), run in a folder that
    holds only params.yaml and dvc.yaml: nothing depends on where gadlib itself lies."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "gadlib", site / "gadlib", ignore=shutil.ignore_patterns("__pycache__"))
    top = make_project(tmp_path / "my project")
    (top / "notebooks").mkdir()
    code = (
        "import gadlib\n"
        "from gadlib.project.params import load_params, resolve_path\n"
        "from gadlib.project.paths import ExperimentPaths, project_root\n"
        "print(gadlib.__file__)\n"
        "print(project_root())\n"
        "print(load_params().experiment_names[0])\n"
        "print(ExperimentPaths('tshirt_vs_shirt').prepared)\n"
        "print(resolve_path('data/fashion-mnist'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    for cwd in (top, top / "notebooks"):
        result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        module, root, first, prepared, data = result.stdout.splitlines()
        assert Path(module) == (site / "gadlib" / "__init__.py").resolve()
        assert (Path(root), first) == (top, "tshirt_vs_shirt")
        assert Path(prepared) == top / "artifacts" / "tshirt_vs_shirt" / "prepared.npz"
        assert Path(data) == top / "data" / "fashion-mnist"


def test_validating_params_imports_neither_torch_nor_papermill():
    # a wrong value must fail at once, and the tools that read params.yaml (tools.readme, tools.timings,
    # tools.fetch) stay light: torch and papermill take one to two seconds to import
    code = (
        "import sys\n"
        "from gadlib.project.params import load_params\n"
        "from gadlib.project.paths import ExperimentPaths\n"
        "ExperimentPaths(load_params().experiment_names[0]).prepared\n"
        "print(sorted(m for m in ('torch', 'papermill') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DVC_ROOT"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "[]"
