"""Eval mode for a block, with every flag restored afterwards."""

import torch
from torch import nn

from gadlib.common.modes import evaluation_mode


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_eval_mode_inside_and_each_module_flag_restored():
    first, second = model().train(), model().eval()
    first[2].eval()  # a partly frozen model comes back as it was
    second[3].weight.requires_grad_(False)
    with evaluation_mode(first, second):
        assert not any(m.training for m in [*first.modules(), *second.modules()])
        assert all(p.requires_grad for p in first.parameters()) and torch.is_grad_enabled()
    assert [m.training for m in first.modules()] == [True, True, True, False, True]
    assert not any(m.training for m in second.modules())
    assert not second[3].weight.requires_grad and second[0].weight.requires_grad


def test_frozen_parameters_and_no_grad_on_request_and_restored_after_an_error():
    net = model().train()
    net[0].bias.requires_grad_(False)
    try:
        with evaluation_mode(net, freeze_parameters=True, no_grad=True):
            assert not any(p.requires_grad for p in net.parameters()) and not torch.is_grad_enabled()
            raise KeyError("inside")
    except KeyError:
        pass
    assert torch.is_grad_enabled() and net.training
    assert [p.requires_grad for p in net.parameters()] == [True, False, True, True, True, True]
