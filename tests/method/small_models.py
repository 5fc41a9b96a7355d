"""Small random-weight models and helpers shared by the tests of the batched path and its accelerations."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def small_cnn() -> nn.Module:
    """Conv, batch norm, ReLU, max-pool and a linear head: every kind of layer the batched path meets."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 2),
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


class strict_fp32:
    """Turn TF32 off for convolutions and matmuls inside the block (any torch version)."""

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved
