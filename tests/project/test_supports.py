"""What the stages share about support sets, none of it needing a trained model: the sets per strategy
(and the α = 0 control), the α schedule, GAD with params.yaml's settings, the images
notebooks/04_attribute explains and the folders notebooks/03_train_support clears (those two functions
taken from the notebooks themselves)."""

import copy

import pytest
import torch

from gadlib.data.datasets import ImageSet
from gadlib.data.prepared import PreparedData
from gadlib.project.params import Experiment, validate_params
from gadlib.project.supports import CONTROL, SupportSet, gad_for, method_kwargs, support_sets, trained_sets
from tests.method.small_models import small_cnn
from tests.notebooks import notebook_function

NAMES = ["T-shirt/top", "Trouser", "Pullover"]


def experiment(**settings) -> Experiment:
    base = {
        "dataset": "fashion_mnist",
        "data_dir": "data/fashion-mnist",
        "classes": NAMES,
        "architecture": "resnet18",
        "image_size": 28,
    }
    return Experiment.model_validate({**base, **settings})


def test_support_sets_per_strategy():
    assert support_sets(experiment(strategy="pair"), NAMES[:2]) == [SupportSet("pair", "pair", pair=(0, 1))]
    ova = support_sets(experiment(strategy="one_vs_all", target_classes=["Pullover", 1]), NAMES)
    assert [(s.name, s.cls, s.target) for s in ova] == [("one_vs_all_2", 2, 2), ("one_vs_all_1", 1, 1)]
    split = support_sets(experiment(strategy="split", groups=[["T-shirt/top"], ["Trouser", "Pullover"]]), NAMES)
    assert split[0].groups == ([0], [1, 2]) and split[0].target is None
    auto = support_sets(experiment(strategy="split", groups="auto"), NAMES)
    assert auto[0].groups is None


def test_support_sets_reject_unknown_class():
    with pytest.raises(ValueError, match="'Coat' is not among"):
        support_sets(experiment(strategy="one_vs_all", target_classes=["Coat"]), NAMES)


def test_alpha_schedule_scales_the_params(params):
    params["support"].update(alphas=[0.5, 1.0], alpha_scale=4.0)
    assert validate_params(params).support.alpha_schedule == [2.0, 4.0]


def test_the_control_set_is_trained_alike_with_alpha_zero(params):
    params["support"].update(alphas=[0.5, 1.0], alpha_scale=2.0, alpha0_control=True)
    validated = validate_params(params)
    gad, control = trained_sets(validated, "tshirt_vs_shirt", NAMES[:2])
    assert gad == SupportSet("pair", "pair", pair=(0, 1)) and gad.alphas(validated) == [1.0, 2.0]
    assert control == SupportSet(CONTROL, "pair", pair=(0, 1), distancing=False)
    assert control.alphas(validated) == [0.0, 0.0]  # K models, as GAD's own set


def test_one_vs_all_control_explains_every_image(params):
    params["experiments"]["tshirt_vs_shirt"].update(
        classes=NAMES, strategy="one_vs_all", target_classes=["Pullover", "Trouser"]
    )
    sets = trained_sets(validate_params(params), "tshirt_vs_shirt", NAMES)
    assert [(s.name, s.cls, s.target, s.distancing) for s in sets] == [
        ("one_vs_all_2", 2, 2, True),
        ("one_vs_all_1", 1, 1, True),
        (CONTROL, 2, None, False),  # the first set's distancing, with α = 0
    ]


@pytest.mark.parametrize("support", [{"alpha0_control": False}, {"alpha_scale": 0.0, "alpha0_control": True}])
def test_no_control_set_unless_asked_and_distinct(params, support):
    # with alpha_scale 0, GAD's own set is trained with α = 0: a control would repeat it
    params["support"].update(support)
    assert [s.name for s in trained_sets(validate_params(params), "tshirt_vs_shirt", NAMES[:2])] == ["pair"]


def test_gad_takes_the_attribution_settings_of_params(params):
    params["attribution"].update(importance="positive", q=0.8, min_agreement=2, batch_size=16, n_steps=7)
    cfg = validate_params(params).attribution
    original = small_cnn()
    supports = [copy.deepcopy(original) for _ in range(2)]
    gad = gad_for("Saliency", original, supports, cfg)
    assert gad.models == [original, *supports] and gad.method == "Saliency" and gad.batch_size == 16
    assert gad.fusion == {
        "importance": "positive",
        "threshold_mode": cfg.threshold_mode,
        "q": 0.8,
        "tau": cfg.tau,
        "min_agreement": 2,
    }
    assert method_kwargs("IntegratedGradients", cfg) == {"n_steps": 7}
    assert method_kwargs("Saliency", cfg) == {}


def _prepared(n_per_class=10):
    labels = torch.arange(2).repeat_interleave(n_per_class)
    images = torch.rand(len(labels), 1, 4, 4)
    part = ImageSet(images, labels, NAMES[:2])
    return PreparedData(part, part, part, [0.5], [0.2])


def explained_images(params, prepared, original):
    """notebooks/04_attribute's ``explained_images(spec)`` with these notebook variables."""
    return notebook_function(
        "notebooks/04_attribute.ipynb",
        "explained_images",
        params=params,
        cfg=params.attribution,
        prepared=prepared,
        original=original,
    )


def test_explained_images_are_balanced_and_deterministic(params):
    params["attribution"]["n_images"], params["seed"] = 6, 3
    validated = validate_params(params)
    prepared = _prepared()
    spec = SupportSet("pair", "pair", pair=(0, 1))
    first = explained_images(validated, prepared, None)(spec)
    again = explained_images(validated, prepared, None)(spec)
    assert torch.equal(first, again)
    assert len(first) == 6 and torch.bincount(prepared.test.labels[first]).tolist() == [3, 3]
    assert torch.equal(first, torch.sort(first).values)  # in increasing order
    other = explained_images(validated.model_copy(update={"seed": 4}), prepared, None)(spec)
    assert not torch.equal(first, other)


def test_one_vs_all_explains_images_predicted_as_its_class(params):
    params["attribution"]["n_images"] = 4
    prepared = _prepared()

    class PredictsByBrightness(torch.nn.Module):
        def forward(self, x):
            bright = x.mean(dim=(1, 2, 3))
            return torch.stack([-bright, bright], dim=1)  # class 1 when brighter than 0

    spec = SupportSet("one_vs_all_1", "one_vs_all", cls=1, target=1)
    index = explained_images(validate_params(params), prepared, PredictsByBrightness())(spec)
    assert len(index) == 4  # every image is brighter than 0, so predicted as class 1
    nothing = SupportSet("one_vs_all_0", "one_vs_all", cls=0, target=0)
    assert len(explained_images(validate_params(params), prepared, PredictsByBrightness())(nothing)) == 0


def test_experiment_or_first(params):
    validated = validate_params(params)
    first, second = validated.experiment_names
    assert validated.experiment_or_first(None) == first
    assert validated.experiment_or_first(second) == second
    with pytest.raises(ValueError, match="unknown experiment 'c'"):
        validated.experiment_or_first("c")


def test_support_sets_no_longer_in_params_are_removed_but_foreign_files_stay(tmp_path):
    remove_unused_support_sets = notebook_function("notebooks/03_train_support.ipynb", "remove_unused_support_sets")
    for name in ("one_vs_all_3", "one_vs_all_6", "kept_by_user"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "support_1.pt").write_bytes(b"x")
    (tmp_path / "kept_by_user" / "notes.txt").write_text("mine")
    (tmp_path / "one_vs_all_6" / ".support_2.pt.k3j9x.tmp").write_bytes(b"x")  # a killed save's leftover
    remove_unused_support_sets(tmp_path, {"one_vs_all_3"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept_by_user", "one_vs_all_3"]
    assert sorted(p.name for p in (tmp_path / "kept_by_user").iterdir()) == ["notes.txt"]
    assert (tmp_path / "one_vs_all_3" / "support_1.pt").exists()
    remove_unused_support_sets(tmp_path / "missing", set())  # no folder yet: nothing to do
