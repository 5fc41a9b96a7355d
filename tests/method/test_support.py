import copy

import pytest
import torch
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
