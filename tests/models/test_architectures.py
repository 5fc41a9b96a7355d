import socket
import time
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from gadlib.models.architectures import ARCHITECTURES, Normalize, architecture_signature, build_model

GREY = {"mean": [0.5], "std": [0.25]}
RGB = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def vgg16_28px():
    torch.manual_seed(0)
    return build_model("vgg16", 2, 1, 28, **GREY).eval()


@pytest.mark.parametrize("architecture", ["resnet18", "small_cnn"])
def test_28px_grey_models_return_one_logit_per_class(architecture):
    model = build_model(architecture, 2, 1, 28, **GREY).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 1, 28, 28)).shape == (3, 2)


def test_vgg16_at_28px_keeps_four_max_pools(vgg16_28px):
    pools = [layer for layer in vgg16_28px.backbone.features if isinstance(layer, nn.MaxPool2d)]
    assert len(pools) == 4
    with torch.no_grad():
        assert vgg16_28px(torch.rand(2, 1, 28, 28)).shape == (2, 2)


def test_vgg16_keeps_torchvision_layer_names(vgg16_28px):
    # Dropped pools become nn.Identity in place, so the ImageNet weights' names still fit.
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    expected = [f"features.{i}.{p}" for i in convs for p in ("weight", "bias")]
    expected += [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    assert [name for name, _ in vgg16_28px.backbone.named_parameters()] == expected


def test_resnet18_on_64px_rgb():
    model = build_model("resnet18", 5, 3, 64, **RGB).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 5)


def test_the_first_layer_normalises_pixel_images():
    model = build_model("small_cnn", 3, 2, 16, mean=[0.5, 0.25], std=[0.5, 0.25])
    assert isinstance(model.normalize, Normalize)
    images = torch.rand(2, 2, 16, 16)
    expected = torch.stack([(images[:, 0] - 0.5) / 0.5, (images[:, 1] - 0.25) / 0.25], dim=1)
    assert torch.allclose(model.normalize(images), expected)


def test_unknown_architecture_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="'resnet50'") as info:
        build_model("resnet50", 2, 1, 28, **GREY)
    for name in ARCHITECTURES:
        assert name in str(info.value)


def test_bad_normalisation_and_sizes_raise():
    with pytest.raises(ValueError, match="one value per input channel"):
        build_model("small_cnn", 2, 3, 28, **GREY)
    with pytest.raises(ValueError, match="std must be positive"):
        build_model("small_cnn", 2, 1, 28, mean=[0.5], std=[0.0])
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small_cnn", 0, 1, 28, **GREY)
    with pytest.raises(ValueError, match="no pretrained weights for 'small_cnn'"):
        build_model("small_cnn", 2, 1, 28, pretrained=True, **GREY)


def test_signature_compares_parameter_names_and_shapes():
    a = build_model("small_cnn", 2, 1, 28, **GREY)
    b = build_model("small_cnn", 2, 1, 28, **GREY)
    c = build_model("small_cnn", 3, 1, 28, **GREY)
    assert architecture_signature(a) == architecture_signature(b)
    assert architecture_signature(a) != architecture_signature(c)
    assert architecture_signature(nn.Linear(4, 2)) == (("weight", (2, 4)), ("bias", (2,)))


def test_pretrained_fails_fast_without_internet(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    timeouts = []

    def no_network(url, dst, *args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    previous = socket.getdefaulttimeout()
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="no internet") as info:
        build_model("resnet18", 2, 1, 28, pretrained=True, download_timeout_s=3.0, **GREY)
    assert time.perf_counter() - start < 10
    assert "hub cache" in str(info.value) and str(tmp_path) in str(info.value)
    assert timeouts == [3.0]  # the download ran under the short timeout ...
    assert socket.getdefaulttimeout() == previous  # ... which is restored afterwards


def test_pretrained_weights_from_the_hub_cache_are_adapted(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18(weights=None)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cache / url.rsplit("/", 1)[-1])

    model = build_model("resnet18", 2, 1, 28, pretrained=True, **GREY)
    conv = model.backbone.conv1.weight
    assert conv.shape == (64, 1, 7, 7)
    assert torch.allclose(conv, imagenet.conv1.weight.sum(dim=1, keepdim=True), atol=1e-6)
    assert torch.equal(model.backbone.layer3[0].conv1.weight, imagenet.layer3[0].conv1.weight)
    assert model.backbone.fc.out_features == 2
