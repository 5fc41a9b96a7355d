import copy
import math

import pytest
import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn

from gadlib.method import batched as fast_attribution
from gadlib.method.fusion import binarize
from gadlib.method.gad import GAD, METHODS, attribute, fuse_maps, make_method, resolve_target

C, H, W, K = 2, 4, 4, 3


def linear_model(seed=0):
    """logits = W · flatten(x): every gradient method has a closed-form answer."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K, bias=False))
    return model.eval()


def class_weights(model, target):
    return model[1].weight[target].detach().reshape(C, H, W)


def images(n=5, seed=1):
    return torch.rand(n, C, H, W, generator=torch.Generator().manual_seed(seed))


def top_pixels(attributions, q=0.9):
    """(N, H, W) mask of the pixels at or above each map's q-quantile of summed |attribution|."""
    return binarize(attributions.abs().sum(dim=1), "quantile", q)


@pytest.mark.parametrize("name", METHODS)
def test_methods_on_a_linear_model_match_closed_forms(name):
    model, x, target = linear_model(), images(), 2
    w = class_weights(model, target)
    expected = {
        "Saliency": w.abs().expand_as(x),
        "InputXGradient": x * w,
        "IntegratedGradients": x * w,  # zero baseline, constant gradient
        "GuidedBackprop": w.expand_as(x),  # no ReLU: the plain gradient
        "SmoothGrad": w.abs().expand_as(x),  # the gradient does not depend on the noise
    }[name]
    result = attribute(name, model, x, target, batch_size=2, n_steps=8, nt_samples=3)
    assert result.shape == x.shape
    assert torch.allclose(result, expected, atol=1e-5)


def test_per_image_baselines_are_split_with_the_batches():
    model, x = linear_model(), images(5)
    baselines = torch.rand(5, C, H, W)
    result = attribute("IntegratedGradients", model, x, 1, batch_size=2, n_steps=4, baselines=baselines)
    assert torch.allclose(result, (x - baselines) * class_weights(model, 1), atol=1e-5)


def test_make_method_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown attribution method 'Occlusion'"):
        make_method("Occlusion", linear_model())


def test_resolve_target():
    model, x = linear_model(), images(4)
    predicted = model(x).argmax(dim=1)
    assert torch.equal(resolve_target(model, x, None), predicted)
    assert resolve_target(model, x, 2).tolist() == [2, 2, 2, 2]
    assert resolve_target(model, x, [0, 1, 2, 0]).tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError, match=r"target \[3\] is out of range"):
        resolve_target(model, x, 3)
    with pytest.raises(ValueError, match=r"target \[-1\] is out of range"):
        resolve_target(model, x, torch.tensor([0, -1, 0, 0]))
    with pytest.raises(ValueError, match="one per image"):
        resolve_target(model, x, [0, 1])


# ----------------------------------------------------------------------------- fusion on hand-built maps
def hand_maps():
    """Two 1-channel 4x4 maps with distinct values, so each has exactly two top-10% pixels."""
    base = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) + 1
    return base, base.flip(-1).flip(-2)  # the second ranks the pixels in reverse


def test_identical_maps_keep_the_original_top_pixels():
    base, _ = hand_maps()
    result = fuse_maps(torch.stack([base, base, base]))
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[0, 3, 2:] = True  # values 15 and 16, at or above the 0.9-quantile 14.5
    assert torch.equal(result.consistency, expected)
    assert torch.equal(result.gad, torch.where(expected.unsqueeze(1), base, torch.zeros_like(base)))
    assert result.importance.shape == (3, 1, 4, 4) and result.masks.shape == (3, 1, 4, 4)


def test_disjoint_maps_give_an_empty_map():
    base, reverse = hand_maps()
    result = fuse_maps(torch.stack([base, reverse]))
    assert not result.consistency.any() and torch.count_nonzero(result.gad) == 0
    union = fuse_maps(torch.stack([base, reverse]), min_agreement=1)
    assert int(union.consistency.sum()) == 4


def test_only_the_original_gives_the_plain_method_thresholded():
    x = torch.randn(3, 2, 5, 5)
    result = fuse_maps(x.unsqueeze(0))
    keep = top_pixels(x)
    assert torch.equal(result.consistency, keep)
    assert torch.equal(result.gad, x * keep.unsqueeze(1))


def test_positive_importance_and_fraction_of_max():
    maps = torch.tensor([[[[-10.0, 1.0], [2.0, 3.0]]]]).unsqueeze(0)
    result = fuse_maps(maps, importance="positive", threshold_mode="fraction_of_max", tau=0.5)
    assert result.consistency[0].tolist() == [[False, False], [True, True]]


def test_all_zero_and_nan_maps_warn_and_give_defined_maps():
    zero = torch.zeros(2, 3, 1, 4, 4)
    with pytest.warns(RuntimeWarning, match="all zero"):
        result = fuse_maps(zero)
    assert not result.consistency.any() and torch.equal(result.gad, torch.zeros(3, 1, 4, 4))
    base, _ = hand_maps()
    broken = base.clone()
    broken[0, 0, 3, 3] = math.nan
    with pytest.warns(RuntimeWarning, match="NaN"):
        result = fuse_maps(torch.stack([broken, base]), min_agreement=1)
    assert torch.isfinite(result.gad).all()
    assert result.gad[0, 0, 3, 3] == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_agreement": 0}, r"min_agreement must be an integer in \[1, 2\]"),
        ({"min_agreement": 3}, r"min_agreement must be an integer in \[1, 2\]"),
        ({"importance": "squared"}, "unknown importance mode"),
        ({"threshold_mode": "otsu"}, "unknown threshold mode"),
        ({"q": 1.0}, "strictly between 0 and 1"),
        ({"tau": 0.0}, r"tau must lie in \(0, 1\]"),
    ],
)
def test_bad_fusion_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fuse_maps(torch.rand(2, 1, 1, 4, 4), **kwargs)
    with pytest.raises(ValueError, match=message):
        GAD("Saliency", linear_model(), [linear_model(1)], **kwargs)


def test_fuse_maps_needs_five_dimensions():
    with pytest.raises(ValueError, match=r"\(M, N, C, H, W\)"):
        fuse_maps(torch.rand(1, 4, 4))


# ----------------------------------------------------------------------------- the GAD class
@pytest.mark.parametrize("name", ["Saliency", "InputXGradient", "IntegratedGradients"])
def test_gad_with_identical_supports_keeps_the_original_top_pixels(name):
    model, x = linear_model(), images()
    supports = [copy.deepcopy(model), copy.deepcopy(model)]
    gad = GAD(name, model, supports, fast=False)
    kwargs = {"n_steps": 8} if name == "IntegratedGradients" else {}
    result = gad.attribute(x, target=1, **kwargs)
    plain = attribute(name, model, x, 1, n_steps=8)
    keep = top_pixels(plain)
    assert result.shape == x.shape
    assert torch.allclose(result, plain * keep.unsqueeze(1), atol=1e-6)
    detailed = gad.attribute_detailed(x, target=1, **kwargs)
    assert detailed.importance.shape == (3, len(x), H, W)
    assert torch.equal(detailed.gad, result)


def test_gad_with_disagreeing_supports_keeps_only_the_agreement():
    model, x = linear_model(), images()
    other = linear_model(seed=5)
    gad = GAD("Saliency", model, [other], fast=False)
    detailed = gad.attribute_detailed(x, target=0)
    expected = top_pixels(class_weights(model, 0).abs().expand_as(x)) & top_pixels(
        class_weights(other, 0).abs().expand_as(x)
    )
    assert torch.equal(detailed.consistency, expected)


def test_gad_without_supports_is_the_plain_method_thresholded():
    model, x = linear_model(), images()
    result = GAD("InputXGradient", model, [], fast=False).attribute(x, target=2)
    plain = x * class_weights(model, 2)
    assert torch.allclose(result, plain * top_pixels(plain).unsqueeze(1))


def test_gad_default_target_is_the_original_prediction():
    model, x = linear_model(), images(6)
    gad = GAD("Saliency", model, [linear_model(2)], fast=False)
    predicted = model(x).argmax(dim=1)
    assert torch.equal(gad.attribute(x), gad.attribute(x, target=predicted))


def test_gad_accepts_a_captum_class():
    model, x = linear_model(), images()
    supports = [linear_model(3)]
    by_class = GAD(Saliency, model, supports).attribute(x, target=1)
    by_name = GAD("Saliency", model, supports, fast=False).attribute(x, target=1)
    assert torch.equal(by_class, by_name)


def test_noise_tunnel_wraps_gad():
    model, x = linear_model(), images(3)
    gad = GAD("Saliency", model, [linear_model(4)], fast=False)
    smoothed = NoiseTunnel(gad).attribute(
        x, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, target=torch.tensor([0, 1, 2])
    )
    # A linear model's saliency ignores the noise, so SmoothGrad of GAD equals GAD.
    assert torch.allclose(smoothed, gad.attribute(x, target=torch.tensor([0, 1, 2])))


def test_gad_runs_models_in_eval_mode_and_restores_their_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(C * H * W, K)).train()
    x = images()
    gad = GAD("Saliency", model, [copy.deepcopy(model)], fast=False)
    assert torch.equal(gad.attribute(x, target=0), gad.attribute(x, target=0))
    assert model.training


def test_gad_rejects_bad_construction_and_calls():
    model = linear_model()
    wider = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K + 1, bias=False))
    with pytest.raises(ValueError, match="support model 1 does not have the original's architecture"):
        GAD("Saliency", model, [wider])
    with pytest.raises(TypeError, match="Captum attribution class"):
        GAD(print, model, [])
    with pytest.raises(ValueError, match="unknown attribution method"):
        GAD("Gradient", model, [])
    gad = GAD("Saliency", model, [], fast=False)
    with pytest.raises(ValueError, match=r"target \[7\] is out of range"):
        gad.attribute(images(), target=7)
    with pytest.raises(TypeError, match="one tensor"):
        gad.attribute((images(),), target=0)


def test_fast_backend_is_used_for_its_methods(monkeypatch):
    calls = []

    def attribute_models(method_name, models, inputs, target, **kwargs):
        calls.append((method_name, len(models), len(inputs), kwargs, [m.training for m in models]))
        return torch.ones(len(models), *inputs.shape)

    monkeypatch.setattr(fast_attribution, "attribute_models", attribute_models)
    model, x = linear_model().train(), images(5)
    gad = GAD("IntegratedGradients", model, [linear_model(1)], batch_size=2)
    detailed = gad.attribute_detailed(x, target=0, n_steps=7)
    kwargs = {"n_steps": 7, "internal_batch_size": 64}
    assert calls == [("IntegratedGradients", 2, n, kwargs, [False, False]) for n in (2, 2, 1)]
    assert detailed.importance.shape == (2, 5, H, W) and model.training
    GAD("IntegratedGradients", model, [linear_model(1)], fast=False).attribute(x, target=0, n_steps=7)
    GAD("GuidedBackprop", model, [linear_model(1)]).attribute(x, target=0)
    GAD(Saliency, model, [linear_model(1)]).attribute(x, target=0)
    assert len(calls) == 3


@pytest.mark.parametrize("name", ["IntegratedGradients", "Saliency", "InputXGradient"])
def test_fast_and_captum_paths_agree(name):
    model, x = linear_model(), images(5)
    supports = [linear_model(1), linear_model(2)]
    kwargs = {"n_steps": 8} if name == "IntegratedGradients" else {}
    fast = GAD(name, model, supports, batch_size=2).attribute_detailed(x, target=1, **kwargs)
    captum = GAD(name, model, supports, fast=False).attribute_detailed(x, target=1, **kwargs)
    assert torch.allclose(fast.importance, captum.importance, atol=1e-5)
    assert torch.equal(fast.consistency, captum.consistency)
