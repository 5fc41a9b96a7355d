import copy
import inspect
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from gadlib.method import support as support_module
from gadlib.method.distancing import distancing_targets, logit_spread
from gadlib.method.support import load_support_models, support_fidelity, train_support_models
from gadlib.models.training import predict_logits, train_model

ALPHAS = (0.5, 1.0)


def linear_problem(n=64, seed=0):
    """Images (N, 1, 1, 4) = [one-hot class, noise]: a linear model can fit any distanced targets."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.zeros(n, 1, 1, 4)
    images[torch.arange(n), 0, 0, labels] = 1.0
    images[:, 0, 0, 2:] = torch.rand(n, 2, generator=generator)
    return images, labels


def linear_original():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1.0, 0.5, 0.2], [-1.0, 1.0, 0.3, -0.4]]))
        model[1].bias.zero_()
    return model.eval()


def fit(original, images, labels, **kwargs):
    options = {
        "alphas": ALPHAS,
        "epochs": 3,
        "lr": 0.05,
        "batch_size": 16,
        "min_steps": 0,
        "min_margin_fraction": None,
        "device": "cpu",
        "progress": False,
        **kwargs,
    }
    return train_support_models(original, images, labels, **options)


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def same_weights(first, second):
    return all(torch.equal(a, b) for a, b in zip(weights(first), weights(second), strict=True))


def same_models(firsts, seconds):
    return all(same_weights(a, b) for a, b in zip(firsts, seconds, strict=True))


def starts_at(start, model):
    return all(torch.equal(a, b) for a, b in zip(start, weights(model), strict=True))


class TrainSpy:
    """Wraps train_model: records each support model's starting weights; can fail on a given call."""

    def __init__(self, monkeypatch, fail_on_call=None):
        self.starts, self.fail_on_call = [], fail_on_call
        monkeypatch.setattr(support_module, "train_model", self)

    def __call__(self, model, *args, **kwargs):
        self.starts.append(weights(model))
        if len(self.starts) == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        return train_model(model, *args, **kwargs)


def test_support_models_reach_the_target_margin_and_lower_the_mse():
    images, labels = linear_problem()
    original = linear_original()
    supports = fit(original, images, labels, epochs=60)
    logits = predict_logits(original, images)
    spread = logit_spread(logits)
    for alpha, model in zip(ALPHAS, supports, strict=True):
        targets = distancing_targets("pair", logits, labels, pair=(0, 1), scale=alpha, spread=spread)
        before = nn.functional.mse_loss(logits, targets)
        after = nn.functional.mse_loss(predict_logits(model, images), targets)
        assert after < 0.01 * before
    rows = support_fidelity(original, supports, ALPHAS, images, labels, spread=spread, final_losses=[0.1, 0.2])
    assert [row["alpha"] for row in rows] == [0.0, *ALPHAS]
    original_row = rows[0]
    assert original_row["agreement"] == 1.0 and original_row["margin"] == original_row["target_margin"]
    for row in rows[1:]:
        assert row["target_margin"] > original_row["margin"]
        assert row["margin"] == pytest.approx(row["target_margin"], rel=0.02)
        assert row["accuracy"] == 1.0 and row["agreement"] == 1.0
    assert [row["final_loss"] for row in rows[1:]] == [0.1, 0.2]
    assert set(original_row) == {"alpha", "accuracy", "agreement", "margin", "target_margin", "final_loss"}


def test_the_original_model_is_never_modified():
    images, labels = linear_problem()
    original = linear_original()
    before = copy.deepcopy(original.state_dict())
    supports = fit(original, images, labels)
    assert all(torch.equal(before[k], v) for k, v in original.state_dict().items())
    assert not original.training
    assert all(s is not original and not s.training for s in supports)


def test_chained_supports_start_from_the_previous_one(monkeypatch):
    images, labels = linear_problem()
    original = linear_original()
    spy = TrainSpy(monkeypatch)
    supports = fit(original, images, labels)
    assert starts_at(spy.starts[0], original)
    assert starts_at(spy.starts[1], supports[0])


def test_original_init_starts_every_support_from_the_original(monkeypatch):
    images, labels = linear_problem()
    original = linear_original()
    spy = TrainSpy(monkeypatch)
    fit(original, images, labels, init="original")
    assert all(starts_at(start, original) for start in spy.starts)


def test_same_seed_gives_identical_support_models():
    images, labels = linear_problem()
    first = fit(linear_original(), images, labels)
    second = fit(linear_original(), images, labels)
    assert same_models(first, second)


def test_an_interrupted_run_resumes_with_the_unfinished_model(tmp_path, monkeypatch):
    images, labels = linear_problem()
    original = linear_original()
    failing = TrainSpy(monkeypatch, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        fit(original, images, labels, checkpoint_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["support_1.pt"]

    resumed_spy = TrainSpy(monkeypatch)
    resumed = fit(original, images, labels, checkpoint_dir=tmp_path)
    assert len(resumed_spy.starts) == 1  # only support 2 trained again
    assert len(failing.starts) == 2

    rerun_spy = TrainSpy(monkeypatch)
    rerun = fit(original, images, labels, checkpoint_dir=tmp_path)
    assert rerun_spy.starts == []
    assert same_models(resumed, rerun)


def test_a_changed_config_retrains_instead_of_reusing(tmp_path, monkeypatch):
    images, labels = linear_problem()
    original = linear_original()
    fit(original, images, labels, checkpoint_dir=tmp_path)
    spy = TrainSpy(monkeypatch)
    fit(original, images, labels, checkpoint_dir=tmp_path, lr=0.01)
    assert len(spy.starts) == 2
    spy = TrainSpy(monkeypatch)
    fit(original, images, labels, checkpoint_dir=tmp_path, lr=0.01, alphas=(0.5, 1.0, 1.5))
    assert len(spy.starts) == 1  # a longer schedule keeps the models it shares


def test_a_shorter_schedule_removes_the_surplus_models_and_keeps_other_files(tmp_path, monkeypatch):
    images, labels = linear_problem()
    original = linear_original()
    fit(original, images, labels, checkpoint_dir=tmp_path, alphas=(0.5, 1.0, 1.5))
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "support_2.pt.bak").write_text("mine")
    spy = TrainSpy(monkeypatch)
    fit(original, images, labels, checkpoint_dir=tmp_path, alphas=(0.5, 1.0))
    assert spy.starts == []  # the shared prefix is reused
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "support_1.pt",
        "support_2.pt",
        "support_2.pt.bak",
    ]


def test_saved_supports_load_with_their_meta(tmp_path):
    images, labels = linear_problem()
    original = linear_original()
    supports = fit(original, images, labels, checkpoint_dir=tmp_path)
    loaded, metas = load_support_models(tmp_path, original, ALPHAS)
    assert same_models(supports, loaded)
    assert [m["alpha"] for m in metas] == list(ALPHAS)
    assert all(m["final_loss"] == m["train_loss"][-1] for m in metas)
    with pytest.raises(ValueError, match="alpha 0.5, but the schedule says 0.75"):
        load_support_models(tmp_path, original, (0.75, 1.0))
    with pytest.raises(FileNotFoundError, match="support_3.pt"):
        load_support_models(tmp_path, original, (0.5, 1.0, 1.5))


def test_bad_support_input_raises():
    images, labels = linear_problem()
    original = linear_original()
    with pytest.raises(ValueError, match="strictly increasing"):
        fit(original, images, labels, alphas=(1.0, 0.5))
    with pytest.raises(ValueError, match="unknown init 'warm'"):
        fit(original, images, labels, init="warm")
    with pytest.raises(ValueError, match="64 images but 3 labels"):
        fit(original, images, labels[:3])
    with pytest.raises(ValueError, match="must differ"):
        fit(original, images, labels, pair=(1, 1))
    with pytest.raises(ValueError, match="3 support models but 2 alphas"):
        support_fidelity(original, [original] * 3, ALPHAS, images, labels)


# ------------------------------------------------------------------ how far training got
def test_well_trained_supports_report_the_full_margin_and_do_not_warn():
    images, labels = linear_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no under-training warning
        supports = fit(linear_original(), images, labels, epochs=60, min_margin_fraction=0.8)
    assert supports.margin_reached == pytest.approx([1.0, 1.0], abs=0.03)
    assert supports.steps == 60 * 4 and supports.epochs == 60
    assert all(m > supports.original_margin for m in supports.margins)
    assert supports.target_margins[1] > supports.target_margins[0] > supports.original_margin


def test_under_trained_supports_warn_naming_the_knobs():
    images, labels = linear_problem()
    with pytest.warns(RuntimeWarning, match="support models under-trained") as caught:
        supports = fit(linear_original(), images, labels, epochs=1, lr=1e-4, min_margin_fraction=0.8)
    message = str(caught[0].message)
    assert all(r < 0.8 for r in supports.margin_reached)
    for fragment in (
        "1 (α = 0.5)",
        "4 optimiser steps",
        "1 epochs of 64 images at batch 16",
        "lr 0.0001",
        "min_steps 0",
        "min_margin_fraction = 0.8",
        "raise min_steps",
    ):
        assert fragment in message, fragment
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(linear_original(), images, labels, epochs=1, lr=1e-4, min_margin_fraction=None)


def test_alpha_zero_supports_have_no_margin_to_reach_and_do_not_warn():
    images, labels = linear_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        supports = fit(linear_original(), images, labels, alphas=(0.0, 0.0), epochs=1, lr=1e-4, min_margin_fraction=0.8)
    assert all(math.isnan(r) for r in supports.margin_reached)


def test_min_steps_adds_epochs_on_small_data_only(monkeypatch):
    images, labels = linear_problem()  # 64 images at batch 16: 4 steps per epoch
    spy = TrainSpy(monkeypatch)
    epochs_seen = []
    monkeypatch.setattr(
        support_module, "train_model", lambda *a, **k: (epochs_seen.append(k["epochs"]), spy(*a, **k))[1]
    )
    supports = fit(linear_original(), images, labels, epochs=3, min_steps=30, min_margin_fraction=None)
    assert epochs_seen == [8, 8] and supports.steps == 32  # ceil(30 / 4) epochs
    epochs_seen.clear()
    supports = fit(linear_original(), images, labels, epochs=10, min_steps=30, min_margin_fraction=None)
    assert epochs_seen == [10, 10] and supports.steps == 40  # 10 epochs are already 40 steps
    with pytest.raises(ValueError, match="min_steps must be an integer >= 0"):
        fit(linear_original(), images, labels, min_steps=-1)


def test_a_min_steps_that_adds_no_step_reuses_saved_supports(tmp_path, monkeypatch):
    images, labels = linear_problem()
    original = linear_original()
    fit(original, images, labels, epochs=10, checkpoint_dir=tmp_path, min_margin_fraction=None)  # min_steps=0
    spy = TrainSpy(monkeypatch)
    fit(original, images, labels, epochs=10, min_steps=40, checkpoint_dir=tmp_path, min_margin_fraction=None)
    assert spy.starts == []  # the same 40 steps: the same fingerprint, as the pipeline's saved supports keep
    fit(original, images, labels, epochs=10, min_steps=41, checkpoint_dir=tmp_path, min_margin_fraction=None)
    assert len(spy.starts) == 2


def test_numpy_and_float64_training_data_give_the_same_supports():
    images, labels = linear_problem()
    from_tensors = fit(linear_original(), images, labels)
    from_numpy = fit(linear_original(), images.numpy(), labels.numpy())
    assert same_models(from_tensors, from_numpy)
    with pytest.warns(UserWarning, match="images are torch.float64; converted to torch.float32, the model's dtype"):
        from_float64 = fit(linear_original(), images.numpy().astype(np.float64), labels.numpy())
    assert same_models(from_tensors, from_float64)
    with pytest.warns(UserWarning, match="test_images are torch.float64"):
        rows = support_fidelity(linear_original(), from_tensors, ALPHAS, images.double(), labels)
    assert rows == support_fidelity(linear_original(), from_tensors, ALPHAS, images, labels)


def test_non_finite_training_images_and_logits_are_refused_naming_them():
    images, labels = linear_problem()
    images[[2, 5]] = math.nan
    with pytest.raises(ValueError, match=r"images hold NaN or infinite values in images \[2, 5\] \(2 of 64\)"):
        fit(linear_original(), images, labels)

    class Overflowing(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x.flatten(1)) * torch.where(x[:, 0, 0, 3:] == 0.125, math.inf, 1.0)

    images, labels = linear_problem()
    images[7, 0, 0, 3] = 0.125
    with pytest.raises(ValueError, match=r"original's logits are NaN or infinite for images \[7\] \(1 of 64\)"):
        fit(Overflowing(), images, labels)


def test_the_defaults_agree_with_the_choices_table_of_the_method():
    method = (Path(__file__).resolve().parents[2] / "docs" / "method.md").read_text(encoding="utf-8")
    row = next(line for line in method.splitlines() if line.startswith("| support training |"))
    defaults = {k: v.default for k, v in inspect.signature(train_support_models).parameters.items()}
    assert defaults["lr"] == 1e-4 and "lr 1e-4" in row and f"{defaults['epochs']} epochs" in row
    assert f"batch {defaults['batch_size']}" in row and f"`min_steps` ({defaults['min_steps']}" in row
    assert f"below {defaults['min_margin_fraction']:.0%}" in row
    pipeline = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text(encoding="utf-8"))
    assert {key: pipeline["support"][key] for key in ("epochs", "lr", "batch_size")} == {
        key: defaults[key] for key in ("epochs", "lr", "batch_size")
    }
    # the default pipeline trains 10 epochs of 1,000 images at batch 128: min_steps adds no step there
    assert defaults["epochs"] * math.ceil(1000 / defaults["batch_size"]) >= defaults["min_steps"]


def test_support_fidelity_takes_numpy_and_refuses_a_single_model():
    images, labels = linear_problem()
    original = linear_original()
    supports = fit(original, images, labels)
    rows = support_fidelity(original, supports, ALPHAS, images.numpy(), labels.numpy())
    assert rows == support_fidelity(original, supports, ALPHAS, images, labels)
    with pytest.raises(TypeError, match="a list"):
        support_fidelity(original, supports[0], ALPHAS[:1], images, labels)
