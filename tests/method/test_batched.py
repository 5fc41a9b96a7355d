"""gadlib.method.batched against Captum's own implementations (float32), on small random models.

Tolerances (the module's contract): default settings give ``relative_error <= 1e-5`` per model
(``||ours - captum||_F / ||captum||_F``) and elementwise ``|d| <= 1e-4 |captum| + 1e-5 max|captum|``;
batch-norm folding, the affine stem and channels_last ``relative_error <= 2e-3``; bfloat16 autocast
``<= 0.4`` (random-weight networks flip many ReLUs under bfloat16 rounding: measured 0.1-0.2);
float16 autocast ``<= 0.15`` and closer than bfloat16.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from gadlib.method.batched import (
    BATCHED_METHODS,
    attribute_models,
    auto_internal_batch_size,
    fold_batchnorm_copy,
    split_affine_stem,
)
from tests.out_of_memory import RaisesOutOfMemory

RELATIVE_ERROR = 1e-5
ELEMENT_RTOL, ELEMENT_ATOL_OF_MAX = 1e-4, 1e-5
ACCELERATED_RELATIVE_ERROR = 2e-3
# bfloat16 rounding flips many ReLUs of a random-weight network: measured 0.10-0.20 on the CPU, and a
# wrong gradient gives about 1.4, so this bound still catches bugs
BF16_RELATIVE_ERROR = 0.4
# float16 keeps 3 more mantissa bits: measured 0.04-0.06 on random-weight ResNet18s (32-224 px)
FP16_RELATIVE_ERROR = 0.15
N_IMAGES, SIZE = 4, 32

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def small_cnn() -> nn.Module:
    """Conv, batch norm, ReLU, max-pool and a linear head: every kind of layer the fast path meets."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 2),
    )


def resnet18() -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=2)


class Normalize(nn.Module):
    """(x - mean) / std with buffers, like the first layer of every gadlib model."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def normalized_resnet18() -> nn.Module:
    """gadlib's layout: Sequential(normalize, backbone), with torchvision's in-place ReLUs."""
    return nn.Sequential(Normalize(), resnet18())


def random_models(factory, count: int, seed: int = 0, device: str = "cpu") -> list[nn.Module]:
    """``count`` models of one architecture with different random weights and batch-norm statistics."""
    torch.manual_seed(seed)
    models = []
    for _ in range(count):
        model = factory()
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial statistics, so folding changes weights
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.normal_(0.0, 0.2)
        models.append(model.eval().to(device))
    return models


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).norm() / reference.norm())


def assert_matches_captum(ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert relative_error(ours, reference) <= RELATIVE_ERROR
    atol = ELEMENT_ATOL_OF_MAX * float(reference.abs().max())
    torch.testing.assert_close(ours, reference, rtol=ELEMENT_RTOL, atol=atol)


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


@pytest.mark.parametrize("ig_method", ["gausslegendre", "riemann_middle"])
@pytest.mark.parametrize("factory", [small_cnn, resnet18], ids=["small_cnn", "resnet18"])
def test_integrated_gradients_match_captum(images, factory, ig_method):
    inputs, targets = images
    models = random_models(factory, 3)
    # 7 rows per pass: chunks that split steps mid-way, and a last one that is shorter
    ours = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8,
                            ig_method=ig_method, internal_batch_size=7)
    assert ours.shape == (3, *inputs.shape)
    for index, model in enumerate(models):
        reference = IntegratedGradients(model).attribute(inputs, target=targets, n_steps=8, method=ig_method)
        assert_matches_captum(ours[index], reference)
    # the three models really differ, so a result reused across models would fail above
    assert relative_error(ours[1], ours[0]) > 0.1


@pytest.mark.parametrize("internal_batch_size", [None, 4, 12, 1000])
def test_batch_size_does_not_change_integrated_gradients(images, internal_batch_size):
    inputs, targets = images
    models = random_models(small_cnn, 2)
    ours = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=10,
                            internal_batch_size=internal_batch_size)
    for index, model in enumerate(models):
        reference = IntegratedGradients(model).attribute(inputs, target=targets, n_steps=10)
        assert_matches_captum(ours[index], reference)


def test_integrated_gradients_with_baselines(images):
    inputs, targets = images
    models = random_models(small_cnn, 2)
    image_baseline = torch.full((1, 3, SIZE, SIZE), 0.5)
    for baselines in (0.25, image_baseline, torch.rand(N_IMAGES, 3, SIZE, SIZE)):
        ours = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=6,
                                baselines=baselines)
        for index, model in enumerate(models):
            captum_baselines = baselines
            if isinstance(baselines, torch.Tensor) and len(baselines) == 1:
                captum_baselines = baselines.expand_as(inputs)
            reference = IntegratedGradients(model).attribute(inputs, baselines=captum_baselines,
                                                             target=targets, n_steps=6)
            assert_matches_captum(ours[index], reference)


@pytest.mark.parametrize("factory", [small_cnn, resnet18], ids=["small_cnn", "resnet18"])
@pytest.mark.parametrize("method_name, captum_class", [("Saliency", Saliency),
                                                       ("InputXGradient", InputXGradient)])
def test_gradient_methods_match_captum(images, factory, method_name, captum_class):
    inputs, targets = images
    models = random_models(factory, 3, seed=2)
    for target in (targets, 1):
        ours = attribute_models(method_name, models, inputs, target, internal_batch_size=3)
        for index, model in enumerate(models):
            reference = captum_class(model).attribute(inputs.clone().requires_grad_(True), target=target)
            assert_matches_captum(ours[index], reference.detach())
    if method_name == "Saliency":
        assert bool((ours >= 0).all())  # Captum's default abs=True


def test_models_are_left_as_they_were(images):
    inputs, targets = images
    models = random_models(resnet18, 2)
    models[0].train()
    models[1].layer1.requires_grad_(False)
    before = [copy.deepcopy(m.state_dict()) for m in models]
    flags = [[p.requires_grad for p in m.parameters()] for m in models]
    for fold in (False, True):
        attribute_models("IntegratedGradients", models, inputs, targets, n_steps=4, fold_batchnorm=fold,
                         channels_last=fold, affine_stem=fold)
    assert models[0].training and all(m.training for m in models[0].modules())
    assert not models[1].training
    for model, state, flag in zip(models, before, flags, strict=True):
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert [p.requires_grad for p in model.parameters()] == flag
        assert all(p.grad is None for p in model.parameters())  # no parameter gradients accumulated


@pytest.mark.parametrize("method_name", BATCHED_METHODS)
def test_accelerations_agree_closely(images, method_name):
    inputs, targets = images
    models = random_models(normalized_resnet18, 2)
    exact = attribute_models(method_name, models, inputs, targets, n_steps=8)
    for fold, channels_last, stem in ((True, False, False), (False, True, False), (False, False, True),
                                      (True, True, True)):
        fast = attribute_models(method_name, models, inputs, targets, n_steps=8, fold_batchnorm=fold,
                                channels_last=channels_last, affine_stem=stem, internal_batch_size=12)
        for index in range(len(models)):
            assert relative_error(fast[index], exact[index]) <= ACCELERATED_RELATIVE_ERROR


@pytest.mark.parametrize("ig_method", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("factory", [small_cnn, normalized_resnet18], ids=["small_cnn", "resnet18"])
def test_affine_stem_matches_captum(images, factory, ig_method):
    inputs, targets = images
    models = random_models(factory, 2, seed=3)
    baselines = torch.full((1, 3, SIZE, SIZE), 0.3)
    ours = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8, ig_method=ig_method,
                            baselines=baselines, affine_stem=True, internal_batch_size=6)
    for index, model in enumerate(models):
        reference = IntegratedGradients(model).attribute(inputs, baselines=baselines.expand_as(inputs),
                                                         target=targets, n_steps=8, method=ig_method)
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


def test_result_is_a_plain_tensor_for_inputs_that_require_grad(images):
    inputs, targets = images
    models = random_models(small_cnn, 1)
    for method_name in BATCHED_METHODS:  # GAD passes its batches with requires_grad on, as Captum does
        needs_grad = inputs.clone().requires_grad_(True)
        result = attribute_models(method_name, models, needs_grad, targets, n_steps=4)
        assert not result.requires_grad and result.grad_fn is None


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
    exact = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8)
    fast = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8,
                            autocast_dtype=torch.bfloat16)
    assert fast.dtype == torch.float32
    assert relative_error(fast[0], exact[0]) <= BF16_RELATIVE_ERROR


def test_float16_autocast_is_closer_than_bfloat16(images):
    inputs, targets = images
    models = random_models(resnet18, 1)
    exact = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8)
    errors = {dtype: relative_error(attribute_models("IntegratedGradients", models, inputs, targets, n_steps=8,
                                                     autocast_dtype=dtype)[0], exact[0])
              for dtype in (torch.float16, torch.bfloat16)}
    assert errors[torch.float16] <= FP16_RELATIVE_ERROR
    assert errors[torch.float16] < errors[torch.bfloat16]


@pytest.mark.parametrize("method_name", BATCHED_METHODS)
def test_out_of_memory_halves_the_batch(images, method_name):
    inputs, targets = images
    (model,) = random_models(small_cnn, 1)
    wrapped = RaisesOutOfMemory(model, limit=3)  # a module that torch.fx cannot split: run whole
    with pytest.warns(RuntimeWarning, match="out of memory"):
        ours = attribute_models(method_name, [wrapped], inputs, targets, n_steps=6, internal_batch_size=24,
                                affine_stem=True)
    failed = [size for size in wrapped.rows if size > 3]
    assert 1 <= len(failed) <= 4  # 24 -> 12 -> 6 -> 3: a few halvings, no endless retry
    first_success = len(failed)
    assert wrapped.rows[:first_success] == failed  # once it fits, it stays small
    reference = attribute_models(method_name, [model], inputs, targets, n_steps=6)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-7)


class RaisesOtherError(nn.Module):
    def forward(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


def test_other_runtime_errors_are_not_taken_for_out_of_memory(images):
    inputs, targets = images
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        attribute_models("Saliency", [RaisesOtherError()], inputs, targets)


def test_out_of_memory_at_batch_one_is_raised(images):
    inputs, targets = images
    wrapped = RaisesOutOfMemory(small_cnn().eval(), limit=0)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="out of memory"):
        attribute_models("Saliency", [wrapped], inputs, targets, internal_batch_size=2)


def test_auto_internal_batch_size_follows_the_budget():
    model = small_cnn().eval()
    one_mib = auto_internal_batch_size(model, (3, SIZE, SIZE), "cpu", memory_budget_bytes=1 << 20)
    eight_mib = auto_internal_batch_size(model, (3, SIZE, SIZE), "cpu", memory_budget_bytes=8 << 20)
    assert 1 <= one_mib < eight_mib
    assert 7 * one_mib <= eight_mib <= 9 * one_mib
    assert auto_internal_batch_size(model, (3, SIZE, SIZE), "cpu", memory_budget_bytes=1) == 1
    assert auto_internal_batch_size(model, (3, SIZE, SIZE), "cpu", memory_budget_bytes=1 << 40,
                                    max_batch=100) == 100
    # a bigger image needs more memory per row, so fewer rows fit
    assert auto_internal_batch_size(model, (3, 4 * SIZE, 4 * SIZE), "cpu", memory_budget_bytes=8 << 20) \
        < eight_mib
    assert auto_internal_batch_size(model, (3, SIZE, SIZE), "cpu") >= 1  # the fixed CPU budget
    assert not model.training


@pytest.mark.parametrize("bad_call, error, message", [
    (lambda m, x, t: attribute_models("GuidedBackprop", m, x, t), ValueError, "gadlib.method.gad"),
    (lambda m, x, t: attribute_models("Saliency", m[0], x, t), TypeError, r"\[model\]"),
    (lambda m, x, t: attribute_models("Saliency", [], x, t), ValueError, "empty"),
    (lambda m, x, t: attribute_models("Saliency", m, x, t[:2]), ValueError, "shape"),
    (lambda m, x, t: attribute_models("Saliency", m, x, 2), ValueError, "out of range"),
    (lambda m, x, t: attribute_models("Saliency", m, x, -1), ValueError, "negative"),
    (lambda m, x, t: attribute_models("Saliency", m, x.long(), t), TypeError, "floating"),
    (lambda m, x, t: attribute_models("IntegratedGradients", m, x, t, baselines=torch.zeros(3, 3)),
     ValueError, "broadcast"),
    (lambda m, x, t: attribute_models("IntegratedGradients", m, x, t, ig_method="simpson"), ValueError,
     "ig_method"),
    (lambda m, x, t: attribute_models("IntegratedGradients", m, x, t, ig_method="riemann_left", n_steps=1),
     ValueError, "n_steps"),
    (lambda m, x, t: attribute_models("Saliency", m, x, t, internal_batch_size=0), ValueError,
     "internal_batch_size"),
])
def test_bad_arguments_raise(images, bad_call, error, message):
    inputs, targets = images
    with pytest.raises(error, match=message):
        bad_call([small_cnn().eval()], inputs, targets)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method_name", BATCHED_METHODS)
def test_cuda_fast_path_matches_captum(images, method_name):
    """On the GPU: float32 (TF32 off) matches Captum; the accelerations and bfloat16 stay close."""
    inputs, targets = (t.cuda() for t in images)
    models = random_models(normalized_resnet18, 2, device="cuda")
    captum_class = {"IntegratedGradients": IntegratedGradients, "Saliency": Saliency,
                    "InputXGradient": InputXGradient}[method_name]
    with _strict_fp32():
        exact = attribute_models(method_name, models, inputs, targets, n_steps=8)
        for index, model in enumerate(models):
            kwargs = {"n_steps": 8} if method_name == "IntegratedGradients" else {}
            reference = captum_class(model).attribute(inputs.clone().requires_grad_(True), target=targets,
                                                      **kwargs).detach()
            # cuDNN may pick other algorithms for other batch shapes: the accelerated bound applies
            assert relative_error(exact[index], reference) <= ACCELERATED_RELATIVE_ERROR
        accelerated = attribute_models(method_name, models, inputs, targets, n_steps=8, channels_last=True,
                                       fold_batchnorm=True, affine_stem=True)
        for index in range(len(models)):
            assert relative_error(accelerated[index], exact[index]) <= ACCELERATED_RELATIVE_ERROR
    # the benchmark's GAD setting on CUDA
    fast = attribute_models(method_name, models, inputs, targets, n_steps=8, autocast_dtype=torch.bfloat16,
                            channels_last=True, fold_batchnorm=True, affine_stem=True)
    assert fast.dtype == torch.float32 and fast.device.type == "cuda"
    for index in range(len(models)):
        assert relative_error(fast[index], exact[index]) <= BF16_RELATIVE_ERROR


class _strict_fp32:
    """Turn TF32 off for convolutions and matmuls inside the block (any torch version)."""

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved
