"""Classifiers for 28-224 px images: ResNet18 / VGG16 (the paper's networks) and a tiny CNN, each
``Sequential(normalize, backbone)`` from pixel-space images in [0, 1] to logits, so attributions and
occlusions are computed in pixel space.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torchvision
from torch import nn

from gadlib.choices import ARCHITECTURES

_IMAGENET_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
}


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` (std > 0), the first layer of every model built here."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t, std_t = (torch.as_tensor(v, dtype=torch.float32).reshape(1, -1, 1, 1) for v in (mean, std))
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"mean {list(mean)} and std {list(std)} must have the same length")
        if not bool((std_t > 0).all()):
            raise ValueError(f"every std must be positive; got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


def build_model(
    architecture: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    pretrained: bool = False,
    download_timeout_s: float = 10.0,
) -> nn.Sequential:
    """An ``nn.Sequential`` of ``normalize`` (``mean``, ``std``: ``in_channels`` values each) and ``backbone``
    (one of ``ARCHITECTURES``): (N, in_channels, H, W) pixel-space images -> (N, num_classes) logits. For a
    small ``image_size``, VGG16's max-pools that would shrink the map below 1 px become ``nn.Identity``
    (indices unchanged, so ImageNet weights load by name). ``pretrained``: torchvision's ImageNet weights
    (hub cache, else downloaded within ``download_timeout_s``), first convolution adapted, new last layer.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; use one of {ARCHITECTURES}")
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean {list(mean)} and std {list(std)} need one value per input channel ({in_channels})")
    if pretrained and architecture not in _IMAGENET_WEIGHTS:
        raise ValueError(f"no pretrained weights for {architecture!r}; pretrained works for {tuple(_IMAGENET_WEIGHTS)}")
    if architecture == "small_cnn":  # adaptive pooling to 4x4 keeps the head's size whatever the image size
        convolutions = [nn.Conv2d(in_channels, 16, kernel_size=3, padding=1), nn.ReLU()]
        convolutions += [nn.Conv2d(16, 32, kernel_size=3, padding=1, stride=2), nn.ReLU()]
        backbone = nn.Sequential(
            *convolutions, nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 4 * 4, num_classes)
        )
    else:
        constructor = getattr(torchvision.models, architecture)
        backbone = constructor(weights=None, num_classes=1000 if pretrained else num_classes)
        if pretrained:
            backbone.load_state_dict(_imagenet_state_dict(architecture, download_timeout_s))
        if in_channels != 3:
            _replace_first_conv(backbone, architecture, in_channels, from_rgb=pretrained)
        if pretrained:  # a new last layer (initialised after the first convolution, as ever)
            if architecture == "resnet18":
                backbone.fc = nn.Linear(backbone.fc.in_features, num_classes)
            else:
                backbone.classifier[-1] = nn.Linear(backbone.classifier[-1].in_features, num_classes)
    if architecture == "vgg16":
        _drop_vanishing_max_pools(backbone.features, image_size)
    return nn.Sequential(OrderedDict(normalize=Normalize(mean, std), backbone=backbone))


def architecture_signature(model: nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``(parameter name, shape)`` pairs in registration order: equal signatures mean interchangeable weights."""
    return tuple((name, tuple(param.shape)) for name, param in model.named_parameters())


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def _replace_first_conv(backbone: nn.Module, architecture: str, in_channels: int, from_rgb: bool) -> None:
    """A first convolution with ``in_channels`` inputs and torchvision's init or, ``from_rgb``, the pretrained
    mean RGB kernel times 3 / in_channels (a grey image gets the RGB network's response)."""
    parent, name = (backbone, "conv1") if architecture == "resnet18" else (backbone.features, "0")
    old = getattr(parent, name)
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    if from_rgb:
        with torch.no_grad():
            new.weight.copy_(old.weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) * (3.0 / in_channels))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    setattr(parent, name, new)


def _drop_vanishing_max_pools(features: nn.Sequential, image_size: int) -> None:
    """Replace each max-pool that would shrink the feature map below 1 px by ``nn.Identity``."""
    size = image_size
    for index, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            if size // 2 < 1:
                features[index] = nn.Identity()
            else:
                size //= 2


def _imagenet_state_dict(architecture: str, timeout_s: float) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights, from the hub cache or downloaded with a short socket timeout."""
    url = _IMAGENET_WEIGHTS[architecture].url
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except OSError as err:  # URLError and socket timeouts are OSErrors
        raise RuntimeError(
            f"could not get the ImageNet weights for {architecture} from {url} ({err}). This machine "
            f"may have no internet: download the file elsewhere and put it in the torch hub cache "
            f"({torch.hub.get_dir()}/checkpoints/), or set pretrained to false."
        ) from err
    finally:
        socket.setdefaulttimeout(previous_timeout)
