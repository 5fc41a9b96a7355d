"""The Quantus adapter: numpy in and out, Quantus's keywords absorbed, per-image cache, and what happens
to the support models when Quantus randomises the model (randomise, retrain, keep)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gadlib.evaluation import quantus_adapter
from gadlib.evaluation.quantus_adapter import QuantusExplainFunc
from gadlib.method import support as support_module
from gadlib.method.gad import GAD

H = W = 6


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * H * W, 2)).eval()


def nudged(model, seed, scale=0.05):
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in twin.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))
    return twin


def setup(method="Saliency", k=2):
    model = small_cnn()
    return model, GAD(method, model, [nudged(model, s) for s in range(1, k + 1)])


def inputs(n=3):
    return np.random.default_rng(0).random((n, 1, H, W), dtype=np.float32)


def randomised_last_layer(model):
    """What Quantus's MPRT yields first (top-down): a copy with the last layer reset."""
    copied = copy.deepcopy(model)
    torch.manual_seed(43)
    copied[-1].reset_parameters()
    return copied


def test_numpy_in_numpy_out_with_quantus_keywords_absorbed():
    model, gad = setup("IntegratedGradients")
    explain = QuantusExplainFunc(gad, n_steps=4)
    x, y = inputs(), np.array([0, 1, 0])
    maps = explain(model=model, inputs=x, targets=y, device="cpu", softmax=False, channel_first=True)
    assert isinstance(maps, np.ndarray) and maps.shape == x.shape and maps.dtype == np.float32
    expected = gad.attribute(torch.from_numpy(x), torch.from_numpy(y), n_steps=4).numpy()
    assert np.array_equal(maps, expected)
    other_steps = explain(model, x, y, n_steps=8)  # Quantus's explain_func_kwargs override the defaults
    assert np.array_equal(other_steps, gad.attribute(torch.from_numpy(x), torch.from_numpy(y), n_steps=8).numpy())
    original = QuantusExplainFunc(gad, output="original", n_steps=4)(model, x, y)
    assert np.array_equal(original, gad.attribute_original(torch.from_numpy(x), torch.from_numpy(y), n_steps=4).numpy())
    assert np.array_equal(explain(model, x, None), gad.attribute(torch.from_numpy(x), None, n_steps=4).numpy())


def test_maps_are_cached_image_by_image(monkeypatch):
    model, gad = setup()
    explain = QuantusExplainFunc(gad)
    calls = []
    attribute = GAD.attribute
    monkeypatch.setattr(
        GAD, "attribute", lambda self, x, *a, **k: (calls.append(len(x)), attribute(self, x, *a, **k))[1]
    )
    x, y = inputs(4), np.array([0, 1, 0, 1])
    first = explain(model, x, y)
    again = explain(model, x[2:], y[2:])  # another batch of the same images: nothing to compute
    mixed = explain(model, x[[1, 3]] * 0.5, y[[1, 3]])  # new images: computed
    assert calls == [4, 2]
    assert np.array_equal(again, first[2:]) and mixed.shape == (2, 1, H, W)
    explain(randomised_last_layer(model), x, y)  # other weights: computed again
    assert calls == [4, 2, 4]
    monkeypatch.setattr(quantus_adapter, "_CACHE_BYTES", 2 * first[0].nbytes)  # room for two maps only
    small = QuantusExplainFunc(gad)
    assert np.array_equal(small(model, x, y), first) and len(small._results) == 2
    assert np.array_equal(small(model, x, y), first)  # two cached, two computed again
    assert calls == [4, 2, 4, 4, 2]
    integrated = QuantusExplainFunc(GAD("IntegratedGradients", model, gad.models[1:]), n_steps=4)
    for _ in range(2):  # a keyword that is not a plain value (a tensor): no cache
        integrated(model, x, y, baselines=torch.zeros(1, 1, H, W))
    assert calls[-2:] == [4, 4]


def test_randomise_gives_every_support_the_randomised_layers_of_the_model():
    model, gad = setup()
    explain = QuantusExplainFunc(gad)
    random_model = randomised_last_layer(model)
    assert explain.changed_parameters(random_model) == ["3.weight", "3.bias"]
    assert explain.changed_parameters(copy.deepcopy(model)) == []
    randomised = explain.gad_for(random_model)
    assert randomised.models[0] is random_model and len(randomised.models) == 3
    for trained, twin in zip(gad.models[1:], randomised.models[1:], strict=True):
        assert torch.equal(twin[-1].weight, random_model[-1].weight)  # the randomised layer, shared
        assert torch.equal(twin[0].weight, trained[0].weight) and twin is not trained  # the rest, its own
    assert explain.gad_for(model) is gad
    assert QuantusExplainFunc(gad, randomisation="keep").gad_for(random_model).models[1:] == gad.models[1:]


def test_retrain_trains_the_supports_from_the_randomised_model_once(monkeypatch):
    model, gad = setup()
    calls = []
    train = support_module.train_support_models
    monkeypatch.setattr(
        support_module, "train_support_models", lambda m, *a, **k: (calls.append(m), train(m, *a, **k))[1]
    )
    images = torch.rand(16, 1, H, W, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(16) % 2
    options = {"alphas": [0.5, 1.0], "epochs": 1, "min_steps": 0, "batch_size": 8, "min_margin_fraction": None}
    explain = QuantusExplainFunc(
        gad, randomisation="retrain", train_images=images, train_labels=labels, support_options=options
    )
    random_model = randomised_last_layer(model)
    x, y = inputs(), np.array([0, 1, 0])
    first = explain(random_model, x, y)
    explain(random_model, x[:1] * 0.9, y[:1])  # the same randomised model: no second training
    assert calls == [random_model]
    assert first.shape == x.shape
    retrained = explain.gad_for(random_model)
    assert len(retrained.models) == 3 and not torch.equal(retrained.models[1][-1].weight, gad.models[1][-1].weight)
    explain(model, x, y)  # the trained model: GAD's own supports, no training
    assert calls == [random_model]
    with pytest.raises(ValueError, match="pass train_images, train_labels and support_options"):
        QuantusExplainFunc(gad, randomisation="retrain")


def test_bad_arguments_are_named():
    model, gad = setup()
    with pytest.raises(TypeError, match="gad must be a gadlib GAD object"):
        QuantusExplainFunc(model)
    with pytest.raises(ValueError, match="unknown randomisation 'shuffle'"):
        QuantusExplainFunc(gad, randomisation="shuffle")
    with pytest.raises(ValueError, match="unknown output 'both'"):
        QuantusExplainFunc(gad, output="both")
    wider = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * H * W, 2))
    with pytest.raises(ValueError, match="does not have the GAD original's parameters"):
        QuantusExplainFunc(gad)(wider, inputs(), np.array([0, 1, 0]))
    assert "device" in quantus_adapter.QUANTUS_KEYWORDS
