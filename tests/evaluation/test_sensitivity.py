"""Occlusion in pixel space, scores, region sensitivity RS and the random control."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from gadlib.evaluation.sensitivity import occlude, occlusion_sensitivity, score

H = W = 6


class Normalize(nn.Module):
    """Normalisation inside the model, as every gadlib model has."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def left_half_model(channels=1, normalise=True):
    """Linear 2-output model whose weights on the right half of the image are zero."""
    torch.manual_seed(0)
    linear = nn.Linear(channels * H * W, 2)
    with torch.no_grad():
        weight = torch.rand(2, channels, H, W) + 0.5
        weight[:, :, :, W // 2 :] = 0
        linear.weight.copy_(weight.reshape(2, -1))
    layers = [Normalize([0.5] * channels, [0.25] * channels)] if normalise else []
    return nn.Sequential(*layers, nn.Flatten(), linear)


def small_cnn():
    torch.manual_seed(1)
    return nn.Sequential(
        Normalize([0.4, 0.5, 0.6], [0.2, 0.2, 0.2]),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 2),
    )


def halves(n):
    left = torch.zeros(n, H, W, dtype=torch.bool)
    left[:, :, : W // 2] = True
    return left, ~left


def test_occluding_the_ignored_half_changes_nothing_and_the_seen_half_does():
    model = left_half_model()
    images = torch.rand(3, 1, H, W) * 0.5 + 0.5  # bright, so a black fill matters
    left, right = halves(3)
    out = occlusion_sensitivity(model, images, {"left": left, "right": right}, 0, progress=False)
    np.testing.assert_allclose(out["right"].score_drop, 0.0, atol=1e-5)
    assert (np.abs(out["left"].score_drop) > 1.0).all()
    np.testing.assert_array_equal(out["left"].area, [18.0, 18.0, 18.0])
    np.testing.assert_allclose(out["left"].rs, out["left"].score_drop / 18.0)


def test_black_fill_is_pixel_zero_before_the_models_normalisation():
    model = left_half_model()
    images = torch.rand(2, 1, H, W)
    left, _ = halves(2)
    out = occlusion_sensitivity(model, images, {"left": left}, 1, progress=False)
    by_hand = images.clone()
    by_hand[:, :, :, : W // 2] = 0.0  # pixel space; the model maps it to (0 - 0.5) / 0.25 = -2
    with torch.no_grad():
        expected = model(by_hand)[:, 1].double().numpy()
        after_normalisation = model[1:](torch.where(left[:, None], 0.0, model[0](images)))[:, 1]
    np.testing.assert_allclose(out["left"].occluded_score, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out["left"].occluded_score, after_normalisation.double().numpy())


def test_occlude_fills():
    images = torch.rand(2, 3, H, W)
    mask = torch.zeros(2, H, W, dtype=torch.bool)
    mask[0, 1:3, 1:3] = True
    black = occlude(images, mask)
    assert (black[0, :, 1:3, 1:3] == 0).all()
    assert torch.equal(black[0][:, ~mask[0]], images[0][:, ~mask[0]])  # outside untouched
    assert torch.equal(black[1], images[1])  # nothing masked in image 1
    mean = occlude(images, mask, fill="mean", mean=(0.1, 0.2, 0.3))
    torch.testing.assert_close(mean[0, :, 2, 2], torch.tensor([0.1, 0.2, 0.3]))
    flat = torch.full((1, 3, H, W), 0.7)
    blurred = occlude(flat, mask[:1], fill="blur", blur_sigma=1.5)
    torch.testing.assert_close(blurred, flat)  # a constant image blurs to itself
    blurred = occlude(images, mask, fill="blur")
    assert torch.equal(blurred[0, :, 0, 0], images[0, :, 0, 0])  # outside the mask untouched
    assert not torch.equal(blurred[0, :, 1, 1], images[0, :, 1, 1])
    assert images.min() >= 0  # input not modified: the black fill went to a copy
    assert not (images[0, :, 1:3, 1:3] == 0).all()


def test_images_outside_unit_range_raise_naming_the_range_and_pixel_space():
    images = torch.rand(1, 1, H, W) * 4 - 2  # looks normalised
    mask = torch.zeros(1, H, W, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*pixel-space"):
        occlude(images, mask)
    with pytest.raises(ValueError, match="pixel-space"):
        occlusion_sensitivity(left_half_model(), images, {"m": mask}, 0, progress=False)


def test_bad_arguments_raise():
    images = torch.rand(2, 1, H, W)
    mask = torch.zeros(2, H, W, dtype=torch.bool)
    with pytest.raises(ValueError, match="mean="):
        occlude(images, mask, fill="mean")
    with pytest.raises(ValueError, match="gray"):
        occlude(images, mask, fill="gray")
    with pytest.raises(ValueError, match=r"\(3, 6, 6\)"):
        occlude(images, torch.zeros(3, H, W, dtype=torch.bool))
    with pytest.raises(ValueError, match="other="):
        score(nn.Sequential(nn.Flatten(), nn.Linear(H * W, 3)), images, 0, mode="margin")


def test_margin_score_is_target_minus_other():
    model = left_half_model()
    images = torch.rand(4, 1, H, W)
    with torch.no_grad():
        logits = model(images).double().numpy()
    target = torch.tensor([0, 1, 0, 1])
    np.testing.assert_allclose(score(model, images, target), logits[np.arange(4), target], rtol=1e-6)
    margin = score(model, images, target, mode="margin")
    np.testing.assert_allclose(margin, logits[np.arange(4), target] - logits[np.arange(4), 1 - target], rtol=1e-5)


def test_batched_occlusion_equals_per_image_occlusion_in_eval_mode():
    model = small_cnn()
    model.train()  # must be switched to eval inside, and back afterwards
    model(torch.rand(8, 3, H, W))  # move the BatchNorm running statistics away from the defaults
    rng = np.random.default_rng(0)
    images = torch.rand(5, 3, H, W)
    sets = torch.from_numpy(rng.random((3, 5, H, W)) < 0.3)
    target = torch.tensor([0, 1, 1, 0, 1])
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    batched = occlusion_sensitivity(model, images, sets, target, fill="blur", batch_size=7, progress=False)
    handle.remove()
    assert calls == [7, 7, 6]  # (3 sets + clean) x 5 images = 20 inputs in ceil(20 / 7) passes
    assert model.training
    model.eval()
    for s in range(3):
        for i in range(5):
            one = occlude(images[i : i + 1], sets[s, i : i + 1], fill="blur")
            clean = score(model, images[i : i + 1], target[i : i + 1])
            occluded = score(model, one, target[i : i + 1])
            assert batched[s].score_drop[i] == pytest.approx(clean[0] - occluded[0], abs=1e-5)
            assert batched[s].area[i] == sets[s, i].sum()


def test_empty_region_gives_nan_rs_with_one_warning_per_call():
    model = left_half_model()
    images = torch.rand(3, 1, H, W)
    empty = torch.zeros(3, H, W, dtype=torch.bool)
    with pytest.warns(RuntimeWarning) as record:
        out = occlusion_sensitivity(model, images, {"a": empty, "b": empty}, 0, progress=False)
    assert len([w for w in record if "area 0" in str(w.message)]) == 1
    assert np.isnan(out["a"].rs).all()
    np.testing.assert_array_equal(out["a"].score_drop, 0.0)


def test_no_warning_for_non_empty_sets():
    model = left_half_model()
    images = torch.rand(2, 1, H, W)
    left, _ = halves(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        occlusion_sensitivity(model, images, {"left": left}, 0, progress=False)
