"""Stage-level helpers that need no trained model: support sets, explained images, folders."""

import pytest
import torch

from gadlib.data.datasets import ImageSet
from gadlib.data.prepared import PreparedData
from gadlib.pipeline.attribute import explained_images
from gadlib.pipeline.experiment import SupportSet, support_sets
from gadlib.pipeline.params import Experiment, validate_params
from gadlib.pipeline.train_support import remove_unused_support_sets

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


def _prepared(n_per_class=10):
    labels = torch.arange(2).repeat_interleave(n_per_class)
    images = torch.rand(len(labels), 1, 4, 4)
    part = ImageSet(images, labels, NAMES[:2])
    return PreparedData(part, part, part, [0.5], [0.2])


def test_explained_images_are_balanced_and_deterministic(params):
    params["attribution"]["n_images"], params["seed"] = 6, 3
    validated = validate_params(params)
    prepared = _prepared()
    spec = SupportSet("pair", "pair", pair=(0, 1))
    first = explained_images(validated, prepared, None, spec)
    again = explained_images(validated, prepared, None, spec)
    assert torch.equal(first, again)
    assert len(first) == 6 and torch.bincount(prepared.test.labels[first]).tolist() == [3, 3]
    other = explained_images(validated.model_copy(update={"seed": 4}), prepared, None, spec)
    assert not torch.equal(first, other)


def test_one_vs_all_explains_images_predicted_as_its_class(params):
    params["attribution"]["n_images"] = 4
    prepared = _prepared()

    class PredictsByBrightness(torch.nn.Module):
        def forward(self, x):
            bright = x.mean(dim=(1, 2, 3))
            return torch.stack([-bright, bright], dim=1)  # class 1 when brighter than 0

    spec = SupportSet("one_vs_all_1", "one_vs_all", cls=1, target=1)
    index = explained_images(validate_params(params), prepared, PredictsByBrightness(), spec)
    assert len(index) == 4  # every image is brighter than 0, so predicted as class 1


def test_experiment_or_first(params):
    validated = validate_params(params)
    first, second = validated.experiment_names
    assert validated.experiment_or_first(None) == first
    assert validated.experiment_or_first(second) == second
    with pytest.raises(ValueError, match="unknown experiment 'c'"):
        validated.experiment_or_first("c")


def test_support_sets_no_longer_in_params_are_removed_but_foreign_files_stay(tmp_path):
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
