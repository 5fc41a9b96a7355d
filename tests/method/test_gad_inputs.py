"""GAD's input contract and input checks: pixel-space images in [0, 1], finite, float tensors (numpy and
other float dtypes converted), support models as a sequence, Captum options it cannot honour refused."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from captum.attr import NoiseTunnel
from torch import nn

from gadlib.common.checks import InputRangeWarning
from gadlib.method.gad import GAD, attribute

C, H, W, K = 1, 4, 4, 2


def linear_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K)).eval()


def images(n=4, seed=1):
    return torch.rand(n, C, H, W, generator=torch.Generator().manual_seed(seed))


def recorded(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, caught


def test_inputs_outside_the_pixel_range_warn_once_naming_the_range_and_the_baseline():
    gad = GAD("IntegratedGradients", linear_model(), [linear_model(1)])
    standardised = (images() - 0.5) / 0.2  # about -2.5 to 2.5
    low, high = float(standardised.min()), float(standardised.max())
    _, first = recorded(lambda: gad.attribute(standardised, target=0, n_steps=4))
    _, second = recorded(lambda: gad.attribute(standardised, target=0, n_steps=4))
    ranged = [w for w in first if issubclass(w.category, InputRangeWarning)]
    assert len(ranged) == 1
    message = str(ranged[0].message)
    assert f"[{low:.4g}, {high:.4g}], outside [0, 1]" in message
    assert "baselines=(torch.zeros_like(images) - mean) / std" in message and "black image" in message
    assert not [w for w in second if issubclass(w.category, InputRangeWarning)], "said once per GAD object"
    assert ranged[0].filename == __file__, "the warning points at the caller's line"


def test_pixel_space_inputs_and_noise_tunnel_copies_raise_no_range_warning():
    gad = GAD("Saliency", linear_model(), [linear_model(1)])
    _, plain = recorded(lambda: gad.attribute(images(), target=0))
    # NoiseTunnel's noisy copies leave [0, 1]; GAD does not warn about them
    _, noisy = recorded(lambda: NoiseTunnel(gad).attribute(images(), nt_type="smoothgrad", nt_samples=3, stdevs=1.0))
    assert not [w for w in plain + noisy if issubclass(w.category, InputRangeWarning)]


def test_a_standardised_baseline_is_the_black_image_of_the_models_input_space():
    mean, std = 0.5, 0.2
    model = linear_model()
    pixel_model = nn.Sequential(Standardise(mean, std), model).eval()
    x = images()
    # the same model, once taking pixels (normalising inside), once taking standardised images
    in_pixels = GAD("IntegratedGradients", pixel_model, []).attribute_original(x, target=0, n_steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputRangeWarning)
        standardised = GAD("IntegratedGradients", model, []).attribute_original(
            (x - mean) / std, target=0, n_steps=8, baselines=(torch.zeros_like(x) - mean) / std
        )
    assert torch.allclose(in_pixels, standardised, atol=1e-5)


class Standardise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_inputs_are_refused_naming_the_images(bad):
    x = images(5)
    x[1, 0, 0, 0] = bad
    x[3] = bad
    gad = GAD("Saliency", linear_model(), [linear_model(1)])
    for call in (
        lambda: gad.attribute(x, target=0),
        lambda: gad.attribute_detailed(x),
        lambda: attribute("Saliency", linear_model(), x, 0),
    ):
        with pytest.raises(ValueError, match=r"NaN or infinite values in images \[1, 3\] \(2 of 5\)"):
            call()


MARKED = 0.123  # the first pixel of the image whose logits are NaN


class NaNForMarkedImage(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(C * H * W, K)

    def forward(self, x):
        marked = (x[:, 0, 0, 0] == MARKED)[:, None]
        return torch.where(marked, math.nan, 1.0) * self.linear(x.flatten(1))


def test_nan_logits_are_refused_when_gad_picks_the_class_and_named_when_a_class_is_given():
    gad = GAD("Saliency", NaNForMarkedImage(), [NaNForMarkedImage()])
    x = images()
    x[1, 0, 0, 0] = MARKED
    with pytest.raises(ValueError, match=r"logits are NaN or infinite for images \[1\] \(1 of 4\)"):
        gad.attribute(x, target=None)
    result, caught = recorded(lambda: gad.attribute(x, target=0))
    named = [str(w.message) for w in caught if "attribution maps of images [1] (1 of 4)" in str(w.message)]
    assert named and "the original, support 1" in named[0]
    assert torch.isfinite(result).all() and (result[1] == 0).all()


def test_numpy_and_float64_inputs_are_converted_with_one_note_for_the_dtype():
    model = linear_model()
    gad = GAD("Saliency", model, [linear_model(1)])
    x = images()
    expected = gad.attribute(x, target=0)
    from_numpy = gad.attribute(x.numpy(), target=np.zeros(4, dtype=np.int64))
    assert isinstance(from_numpy, torch.Tensor) and torch.equal(from_numpy, expected)
    doubled, caught = recorded(lambda: gad.attribute(x.double(), target=0))
    notes = [str(w.message) for w in caught if "torch.float64" in str(w.message)]
    assert len(notes) == 1 and "converts the inputs to torch.float32" in notes[0]
    assert doubled.dtype == torch.float32 and torch.allclose(doubled, expected)
    _, again = recorded(lambda: gad.attribute(x.double(), target=0))
    assert not [w for w in again if "torch.float64" in str(w.message)]
    # a float64 model takes float64 inputs as they are
    double_model = copy.deepcopy(model).double()
    result, caught = recorded(lambda: GAD("Saliency", double_model, []).attribute(x.double(), target=0))
    assert result.dtype == torch.float64 and not [w for w in caught if "float64" in str(w.message)]


def test_support_models_must_be_a_sequence_of_modules():
    model = linear_model()
    with pytest.raises(TypeError, match=r"a list \(even for one support model: \[support\]\); got one Sequential"):
        GAD("Saliency", model, linear_model(1))
    with pytest.raises(TypeError, match="support model 2 must be a torch.nn.Module; got str"):
        GAD("Saliency", model, [linear_model(1), "support.pt"])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        GAD("Saliency", [model], [])
    assert len(GAD("Saliency", model, nn.ModuleList([linear_model(1)])).models) == 2
    assert len(GAD("Saliency", model, (m for m in [linear_model(1)])).models) == 2


@pytest.mark.parametrize("fast", [True, False])
def test_return_convergence_delta_gets_a_sentence(fast):
    gad = GAD("IntegratedGradients", linear_model(), [linear_model(1)], fast=fast)
    with pytest.raises(ValueError, match="GAD has no convergence delta"):
        gad.attribute(images(), target=0, n_steps=4, return_convergence_delta=True)
    with pytest.raises(ValueError, match="GAD has no convergence delta"):
        NoiseTunnel(gad).attribute(images(), nt_samples=2, target=0, n_steps=4, return_convergence_delta=True)
    plain = gad.attribute(images(), target=0, n_steps=4)
    assert torch.equal(gad.attribute(images(), target=0, n_steps=4, return_convergence_delta=False), plain)


def test_attribute_original_is_the_original_map_before_fusion():
    model, x = linear_model(), images()
    gad = GAD("InputXGradient", model, [linear_model(1)])
    original = gad.attribute_original(x, target=1)
    assert torch.allclose(original, x * model[1].weight[1].reshape(C, H, W), atol=1e-6)
    kept = gad.attribute(x, target=1) != 0
    assert torch.equal(gad.attribute(x, target=1)[kept], original[kept])


def test_with_models_keeps_the_method_and_options():
    gad = GAD("Saliency", linear_model(), [linear_model(1)], q=0.75, batch_size=3, fast=False)
    other = gad.with_models(linear_model(2), [linear_model(3), linear_model(4)])
    assert other.method == "Saliency" and other.fusion == gad.fusion and other.batch_size == 3
    assert len(other.models) == 3 and other._fast_method is None
