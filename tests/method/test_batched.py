"""gadlib.method.batched against Captum's own implementations (float32), on small random models.

Tolerances (the module's contract): ``relative_error <= 1e-5`` per model
(``||ours - captum||_F / ||captum||_F``) and elementwise ``|d| <= 1e-4 |captum| + 1e-5 max|captum|``.
The benchmark's accelerations are tested in tests/test_bench_accelerated.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import nn

from gadlib.method.batched import BATCHED_METHODS, attribute_models, auto_internal_batch_size
from tests.method.small_models import (
    normalized_resnet18,
    random_models,
    relative_error,
    resnet18,
    small_cnn,
    strict_fp32,
)
from tests.out_of_memory import RaisesOutOfMemory

RELATIVE_ERROR = 1e-5
ELEMENT_RTOL, ELEMENT_ATOL_OF_MAX = 1e-4, 1e-5
# cuDNN may pick other algorithms for other batch shapes, which round differently
CUDA_RELATIVE_ERROR = 2e-3
N_IMAGES, SIZE = 4, 32


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
    ours = attribute_models(
        "IntegratedGradients", models, inputs, targets, n_steps=8, ig_method=ig_method, internal_batch_size=7
    )
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
    ours = attribute_models(
        "IntegratedGradients", models, inputs, targets, n_steps=10, internal_batch_size=internal_batch_size
    )
    for index, model in enumerate(models):
        reference = IntegratedGradients(model).attribute(inputs, target=targets, n_steps=10)
        assert_matches_captum(ours[index], reference)


def test_integrated_gradients_with_baselines(images):
    inputs, targets = images
    models = random_models(small_cnn, 2)
    image_baseline = torch.full((1, 3, SIZE, SIZE), 0.5)
    for baselines in (0.25, image_baseline, torch.rand(N_IMAGES, 3, SIZE, SIZE)):
        ours = attribute_models("IntegratedGradients", models, inputs, targets, n_steps=6, baselines=baselines)
        for index, model in enumerate(models):
            captum_baselines = baselines
            if isinstance(baselines, torch.Tensor) and len(baselines) == 1:
                captum_baselines = baselines.expand_as(inputs)
            reference = IntegratedGradients(model).attribute(
                inputs, baselines=captum_baselines, target=targets, n_steps=6
            )
            assert_matches_captum(ours[index], reference)


@pytest.mark.parametrize("factory", [small_cnn, resnet18], ids=["small_cnn", "resnet18"])
@pytest.mark.parametrize("method_name, captum_class", [("Saliency", Saliency), ("InputXGradient", InputXGradient)])
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
    attribute_models("IntegratedGradients", models, inputs, targets, n_steps=4)
    assert models[0].training and all(m.training for m in models[0].modules())
    assert not models[1].training
    for model, state, flag in zip(models, before, flags, strict=True):
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert [p.requires_grad for p in model.parameters()] == flag
        assert all(p.grad is None for p in model.parameters())  # no parameter gradients accumulated


def test_result_is_a_plain_tensor_for_inputs_that_require_grad(images):
    inputs, targets = images
    models = random_models(small_cnn, 1)
    for method_name in BATCHED_METHODS:  # GAD passes its batches with requires_grad on, as Captum does
        needs_grad = inputs.clone().requires_grad_(True)
        result = attribute_models(method_name, models, needs_grad, targets, n_steps=4)
        assert not result.requires_grad and result.grad_fn is None


@pytest.mark.parametrize("method_name", BATCHED_METHODS)
def test_out_of_memory_halves_the_batch(images, method_name):
    inputs, targets = images
    (model,) = random_models(small_cnn, 1)
    wrapped = RaisesOutOfMemory(model, limit=3)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        ours = attribute_models(method_name, [wrapped], inputs, targets, n_steps=6, internal_batch_size=24)
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
    assert auto_internal_batch_size(model, (3, SIZE, SIZE), "cpu", memory_budget_bytes=1 << 40, max_batch=100) == 100
    # a bigger image needs more memory per row, so fewer rows fit
    assert auto_internal_batch_size(model, (3, 4 * SIZE, 4 * SIZE), "cpu", memory_budget_bytes=8 << 20) < eight_mib
    assert auto_internal_batch_size(model, (3, SIZE, SIZE), "cpu") >= 1  # the fixed CPU budget
    assert not model.training


@pytest.mark.parametrize(
    "bad_call, error, message",
    [
        (lambda m, x, t: attribute_models("GuidedBackprop", m, x, t), ValueError, "gadlib.method.gad"),
        (lambda m, x, t: attribute_models("Saliency", m[0], x, t), TypeError, r"\[model\]"),
        (lambda m, x, t: attribute_models("Saliency", [], x, t), ValueError, "empty"),
        (lambda m, x, t: attribute_models("Saliency", m, x, t[:2]), ValueError, "shape"),
        (lambda m, x, t: attribute_models("Saliency", m, x, 2), ValueError, "out of range"),
        # every target is checked, not only those of the first pass
        (
            lambda m, x, t: attribute_models("Saliency", m, x, torch.tensor([0, 1, 1, 2]), internal_batch_size=1),
            ValueError,
            r"target \[2\] is out of range",
        ),
        (lambda m, x, t: attribute_models("Saliency", m, x, -1), ValueError, "negative"),
        (lambda m, x, t: attribute_models("Saliency", m, x.long(), t), TypeError, "floating"),
        (
            lambda m, x, t: attribute_models("IntegratedGradients", m, x, t, baselines=torch.zeros(3, 3)),
            ValueError,
            "broadcast",
        ),
        (
            lambda m, x, t: attribute_models("IntegratedGradients", m, x, t, ig_method="simpson"),
            ValueError,
            "ig_method",
        ),
        (
            lambda m, x, t: attribute_models("IntegratedGradients", m, x, t, ig_method="riemann_left", n_steps=1),
            ValueError,
            "n_steps",
        ),
        (
            lambda m, x, t: attribute_models("Saliency", m, x, t, internal_batch_size=0),
            ValueError,
            "internal_batch_size",
        ),
    ],
)
def test_bad_arguments_raise(images, bad_call, error, message):
    inputs, targets = images
    with pytest.raises(error, match=message):
        bad_call([small_cnn().eval()], inputs, targets)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method_name", BATCHED_METHODS)
def test_cuda_batched_path_matches_captum(images, method_name):
    """On the GPU, float32 (TF32 off) matches Captum."""
    inputs, targets = (t.cuda() for t in images)
    models = random_models(normalized_resnet18, 2, device="cuda")
    captum_class = {"IntegratedGradients": IntegratedGradients, "Saliency": Saliency, "InputXGradient": InputXGradient}[
        method_name
    ]
    with strict_fp32():
        exact = attribute_models(method_name, models, inputs, targets, n_steps=8)
        for index, model in enumerate(models):
            kwargs = {"n_steps": 8} if method_name == "IntegratedGradients" else {}
            reference = (
                captum_class(model).attribute(inputs.clone().requires_grad_(True), target=targets, **kwargs).detach()
            )
            assert relative_error(exact[index], reference) <= CUDA_RELATIVE_ERROR
    assert exact.dtype == torch.float32 and exact.device.type == "cuda"
