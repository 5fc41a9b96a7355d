"""The benchmark's accelerations of the batched path (bench/accelerated.py) against the exact path and Captum.

Bounds on ``relative_error = ||ours - exact||_F / ||exact||_F``: batch-norm folding, the affine stem
and channels_last <= 2e-3 for Saliency and InputXGradient (other kernels round differently: about
1e-6 seen), <= 0.05 for Integrated Gradients (along its path a ReLU or max-pool near a tie then
sends one step's gradient elsewhere: up to 1.3e-2 seen for one map on an AMD EPYC CPU, 1e-7 for
the rest; a wrong gradient gives about 1.4, and the other methods keep the tight bound on the same
code); bfloat16 autocast <= 0.4 (its 8-bit mantissa
flips many ReLUs of a random-weight network, while a wrong gradient gives about 1.4, so the bound
still catches bugs); float16 autocast <= 0.15, and closer than bfloat16.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from gadlib.choices import BATCHED_METHODS
from gadlib.method import batched
from tests.method.small_models import (
    Normalize,
    normalized_resnet18,
    random_models,
    relative_error,
    resnet18,
    small_cnn,
    strict_fp32,
)
from tests.out_of_memory import RaisesOutOfMemory

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
from accelerated import attribute_models, fold_batchnorm_copy, split_affine_stem  # noqa: E402

ACCELERATED_RELATIVE_ERROR = 2e-3
ACCELERATED_PATH_RELATIVE_ERROR = 5e-2  # Integrated Gradients: a tie on the path moves one step's gradient
BF16_RELATIVE_ERROR = 0.4
FP16_RELATIVE_ERROR = 0.15
N_IMAGES, SIZE = 4, 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is as fast, and immune to OpenMP stalls when other jobs load the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(N_IMAGES, 3, SIZE, SIZE, generator=generator)
    return inputs, torch.tensor([0, 1, 1, 0])


def test_without_accelerations_it_is_the_exact_path(images):
    inputs, targets = images
    models = random_models(small_cnn, 2)
    for method_name in BATCHED_METHODS:
        ours = attribute_models(method_name, models, inputs, targets, n_steps=6, internal_batch_size=10)
        exact = batched.attribute_models(method_name, models, inputs, targets, n_steps=6, internal_batch_size=10)
        assert torch.equal(ours, exact)


@pytest.mark.parametrize("method_name", BATCHED_METHODS)
def test_accelerations_agree_closely(images, method_name):
    inputs, targets = images
    models = random_models(normalized_resnet18, 2)
    exact = batched.attribute_models(method_name, models, inputs, targets, n_steps=8)
    for fold, channels_last, stem in (
        (True, False, False),
        (False, True, False),
        (False, False, True),
        (True, True, True),
    ):
        fast = attribute_models(
            method_name,
            models,
            inputs,
            targets,
            n_steps=8,
            fold_batchnorm=fold,
            channels_last=channels_last,
            affine_stem=stem,
            internal_batch_size=12,
        )
        path_method = method_name == "IntegratedGradients"
        bound = ACCELERATED_PATH_RELATIVE_ERROR if path_method else ACCELERATED_RELATIVE_ERROR
        for index in range(len(models)):
            assert relative_error(fast[index], exact[index]) <= bound


def test_models_are_left_as_they_were(images):
    inputs, targets = images
    models = random_models(resnet18, 2)
    models[0].train()
    models[1].layer1.requires_grad_(False)
    before = [copy.deepcopy(m.state_dict()) for m in models]
    flags = [[p.requires_grad for p in m.parameters()] for m in models]
    attribute_models(
        "IntegratedGradients",
        models,
        inputs,
        targets,
        n_steps=4,
        fold_batchnorm=True,
        channels_last=True,
        affine_stem=True,
    )
    assert models[0].training and all(m.training for m in models[0].modules())
    assert not models[1].training
    for model, state, flag in zip(models, before, flags, strict=True):
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert [p.requires_grad for p in model.parameters()] == flag
        assert all(p.grad is None for p in model.parameters())  # no parameter gradients accumulated


@pytest.mark.parametrize("ig_method", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("factory", [small_cnn, normalized_resnet18], ids=["small_cnn", "resnet18"])
def test_affine_stem_matches_captum(images, factory, ig_method):
    inputs, targets = images
    models = random_models(factory, 2, seed=3)
    baselines = torch.full((1, 3, SIZE, SIZE), 0.3)
    ours = attribute_models(
        "IntegratedGradients",
        models,
        inputs,
        targets,
        n_steps=8,
        ig_method=ig_method,
        baselines=baselines,
        affine_stem=True,
        internal_batch_size=6,
    )
    for index, model in enumerate(models):
        reference = IntegratedGradients(model).attribute(
            inputs, baselines=baselines.expand_as(inputs), target=targets, n_steps=8, method=ig_method
        )
        assert relative_error(ours[index], reference) <= ACCELERATED_RELATIVE_ERROR


def test_split_affine_stem_stops_at_the_first_non_affine_operation():
    (model,) = random_models(normalized_resnet18, 1)
    stem, rest = split_affine_stem(model)
    stem_modules = {type(m) for m in stem.modules()}
    assert nn.Conv2d in stem_modules and nn.BatchNorm2d in stem_modules and nn.ReLU not in stem_modules
    assert "sub" in stem.code and "truediv" in stem.code  # the normalisation is in the stem
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(rest(stem(x)), model(x))
    # the model's in-place ReLU would modify the stem output (a leaf): the split uses a copy
    assert model[1].relu.inplace
    leaf = stem(x).detach().requires_grad_(True)
    rest(leaf).sum().backward()
    assert leaf.grad is not None
    folded_stem, _ = split_affine_stem(fold_batchnorm_copy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded_stem.modules())


def test_split_affine_stem_declines_models_without_an_affine_stem():
    starts_with_relu = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    assert split_affine_stem(starts_with_relu) is None
    only_normalisation = nn.Sequential(Normalize(), nn.ReLU(), nn.Flatten())
    assert split_affine_stem(only_normalisation) is None  # no convolution: nothing worth splitting


def test_fold_batchnorm_copy_removes_batch_norm_and_keeps_the_original():
    (model,) = random_models(resnet18, 1)
    folded = fold_batchnorm_copy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm_copy(model.train())


def test_fold_batchnorm_falls_back_on_untraceable_model(images):
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = small_cnn()

        def forward(self, x):
            if x.sum() > 0:  # control flow on values: torch.fx cannot trace it
                return self.body(x)
            return -self.body(x)

    inputs, targets = images
    model = DataDependent().eval()
    with pytest.warns(RuntimeWarning, match="could not fold"):
        folded = attribute_models("Saliency", [model], inputs, targets, fold_batchnorm=True)
    plain = attribute_models("Saliency", [model], inputs, targets)
    torch.testing.assert_close(folded, plain)


def test_bfloat16_autocast_stays_close(images):
    inputs, targets = images
    models = random_models(small_cnn, 1)
    exact = batched.attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8)
    fast = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8, autocast_dtype=torch.bfloat16)
    assert fast.dtype == torch.float32
    assert relative_error(fast[0], exact[0]) <= BF16_RELATIVE_ERROR


def test_float16_autocast_is_closer_than_bfloat16(images):
    inputs, targets = images
    models = random_models(resnet18, 1)
    exact = batched.attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8)
    errors = {
        dtype: relative_error(
            attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8, autocast_dtype=dtype)[0],
            exact[0],
        )
        for dtype in (torch.float16, torch.bfloat16)
    }
    assert errors[torch.float16] <= FP16_RELATIVE_ERROR
    assert errors[torch.float16] < errors[torch.bfloat16]


def test_out_of_memory_on_the_affine_stem_path_halves_the_batch(images):
    inputs, targets = images
    (model,) = random_models(small_cnn, 1)
    wrapped = RaisesOutOfMemory(model, limit=3)  # a module that torch.fx cannot split: run whole
    with pytest.warns(RuntimeWarning, match="out of memory"):
        ours = attribute_models(
            "IntegratedGradients", [wrapped], inputs, targets, n_steps=6, internal_batch_size=24, affine_stem=True
        )
    assert 1 <= len([size for size in wrapped.rows if size > 3]) <= 4  # 24 -> 12 -> 6 -> 3
    reference = batched.attribute_models("IntegratedGradients", [model], inputs, targets, n_steps=6)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method_name", BATCHED_METHODS)
def test_cuda_accelerations_stay_close(images, method_name):
    """On the GPU: the accelerations in float32 (TF32 off) and the benchmark's bfloat16 setting."""
    inputs, targets = (t.cuda() for t in images)
    models = random_models(normalized_resnet18, 2, device="cuda")
    captum_class = {"IntegratedGradients": IntegratedGradients, "Saliency": Saliency, "InputXGradient": InputXGradient}[
        method_name
    ]
    kwargs = {"n_steps": 8} if method_name == "IntegratedGradients" else {}
    with strict_fp32():
        exact = batched.attribute_models(method_name, models, inputs, targets, n_steps=8)
        accelerated = attribute_models(
            method_name, models, inputs, targets, n_steps=8, channels_last=True, fold_batchnorm=True, affine_stem=True
        )
        for index, model in enumerate(models):
            assert relative_error(accelerated[index], exact[index]) <= ACCELERATED_RELATIVE_ERROR
            reference = (
                captum_class(model).attribute(inputs.clone().requires_grad_(True), target=targets, **kwargs).detach()
            )
            assert relative_error(accelerated[index], reference) <= ACCELERATED_RELATIVE_ERROR
    # the benchmark's GAD setting on CUDA
    fast = attribute_models(
        method_name,
        models,
        inputs,
        targets,
        n_steps=8,
        autocast_dtype=torch.bfloat16,
        channels_last=True,
        fold_batchnorm=True,
        affine_stem=True,
    )
    assert fast.dtype == torch.float32 and fast.device.type == "cuda"
    for index in range(len(models)):
        assert relative_error(fast[index], exact[index]) <= BF16_RELATIVE_ERROR
