import pytest
import torch
from torch import nn

from gadlib.models.training import (
    Augmentation,
    TrainHistory,
    adam,
    predict_logits,
    select_device,
    train_epoch,
    train_model,
)
from tests.out_of_memory import RaisesOutOfMemory


def separable_problem(n=64, seed=0):
    """Bright-left vs bright-right 4x4 images."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = 0.2 * torch.rand(n, 1, 4, 4, generator=generator)
    images[labels == 0, :, :, :2] += 0.8
    images[labels == 1, :, :, 2:] += 0.8
    return images, labels


def tiny_net(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 2))


def train(model, images, labels, **kwargs):
    options = {
        "loss": "cross_entropy",
        "epochs": 3,
        "batch_size": 8,
        "lr": 0.01,
        "seed": 0,
        "device": "cpu",
        "progress": False,
        **kwargs,
    }
    return train_model(model, images, labels, **options)


def weights(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_select_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        select_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")


def test_cross_entropy_training_learns_a_separable_problem():
    images, labels = separable_problem()
    model = tiny_net()
    history = train(model, images, labels, epochs=5, val_images=images, val_targets=labels)
    assert isinstance(history, TrainHistory)
    assert len(history.train_loss) == len(history.val_loss) == len(history.val_accuracy) == 5
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_accuracy[-1] == 1.0
    assert history.best_epoch == 5 and not history.stopped_early


def test_mse_training_regresses_target_logits():
    images, labels = separable_problem()
    targets = torch.stack([labels * 2.0 - 1.0, 1.0 - labels * 2.0], dim=1)
    model = tiny_net()
    history = train(model, images, targets, loss="mse", epochs=20)
    assert history.val_accuracy == [] and history.train_loss[-1] < 0.1 * history.train_loss[0]


def test_same_seed_gives_bit_identical_weights_and_leaves_global_rng_alone():
    images, labels = separable_problem()
    first, second, other_seed = tiny_net(dropout=0.3), tiny_net(dropout=0.3), tiny_net(dropout=0.3)
    rng_before = torch.get_rng_state()
    train(first, images, labels)
    assert torch.equal(torch.get_rng_state(), rng_before)
    train(second, images, labels)
    train(other_seed, images, labels, seed=1)
    assert same_weights(weights(first), weights(second))
    assert not same_weights(weights(first), weights(other_seed))


def test_early_stopping_restores_the_best_weights():
    images, labels = separable_problem()
    # Validation labels are flipped: the better the model learns, the worse its validation loss.
    flipped = 1 - labels
    model = tiny_net()
    history = train(model, images, labels, epochs=10, val_images=images, val_targets=flipped, early_stopping_patience=2)
    best = history.val_loss.index(min(history.val_loss)) + 1
    assert history.stopped_early and history.best_epoch == best
    assert len(history.train_loss) == best + 2
    reference = tiny_net()
    train(reference, images, labels, epochs=best)
    assert same_weights(weights(model), weights(reference))


def test_train_epoch_is_the_epoch_of_train_model():
    images, labels = separable_problem()
    reference = tiny_net(dropout=0.5)
    train(reference, images, labels, epochs=2)
    model = tiny_net(dropout=0.5)
    optimizer = adam(model.parameters(), 0.01)
    losses = [
        train_epoch(
            model,
            images,
            labels,
            optimizer,
            loss="cross_entropy",
            batch_size=8,
            seed=0,
            epoch=epoch,
            device=torch.device("cpu"),
        )
        for epoch in range(2)
    ]
    assert same_weights(weights(model), weights(reference))
    assert all(loss > 0 for loss in losses)


def test_predict_logits_runs_in_eval_mode_and_restores_the_mode():
    images, _ = separable_problem(n=10)
    model = tiny_net(dropout=0.9).train()
    first = predict_logits(model, images, batch_size=3)
    second = predict_logits(model, images, batch_size=10)
    assert first.shape == (10, 2) and first.dtype == torch.float32 and first.device.type == "cpu"
    assert torch.allclose(first, second)  # no dropout noise, batching does not matter
    assert model.training


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"targets": torch.zeros(5, dtype=torch.long)}, "64 images but 5 targets"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a positive finite"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"targets": torch.zeros(64)}, "cross_entropy needs targets"),
        ({"loss": "mse"}, "mse needs targets"),
        ({"early_stopping_patience": 2}, "early stopping needs validation data"),
        ({"val_images": torch.zeros(4, 1, 4, 4)}, "both val_images and val_targets"),
        ({"images": torch.zeros(64, 16)}, r"shape \(N, C, H, W\)"),
    ],
)
def test_bad_training_input_raises(kwargs, message):
    images, labels = separable_problem()
    call = {"images": images, "targets": labels, **kwargs}
    with pytest.raises(ValueError, match=message):
        train(tiny_net(), call.pop("images"), call.pop("targets"), **call)


def test_predict_logits_halves_the_batch_when_a_pass_runs_out_of_memory():
    images, _ = separable_problem(n=10)
    net = tiny_net()
    wrapped = RaisesOutOfMemory(net, limit=3)
    with pytest.warns(RuntimeWarning, match="out of memory during prediction") as record:
        logits = predict_logits(wrapped, images, batch_size=8)
    assert str(record[0].message).startswith("out of memory during prediction with batch_size=8; retrying")
    assert record[0].filename == __file__  # the warning points at the caller
    torch.testing.assert_close(logits, predict_logits(net, images))
    assert max(wrapped.rows) == 8 and wrapped.rows[-1] <= 3
    with pytest.raises(RuntimeError, match="out of memory"), pytest.warns(RuntimeWarning, match="out of memory"):
        predict_logits(RaisesOutOfMemory(net, limit=0), images, batch_size=2)


def test_augmentation_shifts_and_flips_deterministically():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    plain = Augmentation()(images, torch.Generator().manual_seed(0))
    assert torch.equal(plain, images)
    shifted = Augmentation(crop_padding=1)(images, torch.Generator().manual_seed(3))
    again = Augmentation(crop_padding=1)(images, torch.Generator().manual_seed(3))
    assert torch.equal(shifted, again) and shifted.shape == images.shape
    for out, image in zip(shifted, images, strict=True):  # a window of the image padded with 1 black pixel
        padded = torch.nn.functional.pad(image, (1, 1, 1, 1))
        windows = [padded[:, r : r + 4, c : c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(out, w) for w in windows)
    flipped = [Augmentation(horizontal_flip=True)(images, torch.Generator().manual_seed(s)) for s in range(8)]
    assert all(
        all(torch.equal(o, i) or torch.equal(o, i.flip(-1)) for o, i in zip(f, images, strict=True)) for f in flipped
    )
    assert any(not torch.equal(f, images) for f in flipped)


def test_augmented_training_is_repeatable_and_differs_from_plain():
    images, labels = separable_problem()
    augment = Augmentation(crop_padding=1, horizontal_flip=True)
    first, again, plain = tiny_net(), tiny_net(), tiny_net()
    train(first, images, labels, augment=augment)
    train(again, images, labels, augment=augment)
    train(plain, images, labels)
    assert same_weights(weights(first), weights(again))
    assert not same_weights(weights(first), weights(plain))


def test_one_cycle_schedule_warms_up_and_anneals(monkeypatch):
    images, labels = separable_problem()
    seen = []
    real_step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    train(tiny_net(), images, labels, epochs=4, lr=0.01, schedule="one_cycle")
    peak = seen.index(max(seen))
    assert max(seen) == pytest.approx(0.01, rel=1e-3) and seen[0] < 0.001 and seen[-1] < 1e-4
    assert 0 < peak < len(seen) - 1
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        train(tiny_net(), images, labels, schedule="cosine")


def test_the_fused_adam_step_is_the_plain_adam_step_up_to_rounding():
    images, labels = separable_problem()
    start = tiny_net()
    steps = {}
    for name, make in (("plain", lambda p: torch.optim.Adam(p, lr=0.01)), ("fused", lambda p: adam(p, 0.01))):
        model = tiny_net()
        optimizer = make(model.parameters())
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        steps[name] = torch.cat(
            [(p - q).flatten() for p, q in zip(model.parameters(), start.parameters(), strict=True)]
        )
    error = (steps["fused"] - steps["plain"]).norm() / steps["plain"].norm()
    assert 0 < steps["plain"].norm() and error < 1e-5


def test_model_selection_keeps_the_best_epoch_without_stopping_early():
    images, labels = separable_problem()
    flipped = 1 - labels  # validation labels the training pushes away from: the first epoch is best
    model = tiny_net()
    history = train(model, images, labels, epochs=4, val_images=images, val_targets=flipped, select_best=True)
    assert len(history.train_loss) == 4 and not history.stopped_early
    best = history.val_loss.index(min(history.val_loss)) + 1
    assert history.best_epoch == best < 4
    reference = tiny_net()
    train(reference, images, labels, epochs=best)
    assert same_weights(weights(model), weights(reference))
    with pytest.raises(ValueError, match="needs validation data"):
        train(tiny_net(), images, labels, select_best=True)
