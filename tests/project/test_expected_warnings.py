"""The attribute stage (notebooks/04_attribute.ipynb) shows real problems as warnings, not what every
run of a method prints."""

from __future__ import annotations

import warnings

import torch
from captum.attr import GuidedBackprop

from gadlib.project.supports import expected_warnings_hidden
from tests.method.small_models import small_cnn


def test_captums_guided_backprop_notice_is_hidden_and_real_problems_are_not():
    model, images = small_cnn().eval(), torch.rand(2, 3, 8, 8, requires_grad=True)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # every warning shown, each time, unless hidden below
        with expected_warnings_hidden():
            GuidedBackprop(model).attribute(images, target=0)  # "Setting backward hooks on ReLU activations"
            warnings.warn("3 maps are all zero; they keep no pixel", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["3 maps are all zero; they keep no pixel"]
