"""Degenerate numbers give defined results with a warning: never a crash, never a silent 0.

NaN or infinite attributions, all-zero maps, a constant image, and models whose logits do not depend
on the input, through the GAD attribution class, the fusion, the per-image evaluation and its summary.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from gadlib.common.atomic import write_json
from gadlib.evaluation.table import evaluate_maps, summarize
from gadlib.method.gad import GAD, METHODS, fuse_maps
from gadlib.models.architectures import build_model

SIZE = 8


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small_cnn", 2, 1, SIZE, [0.5], [0.25]).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


class NaNLogits(nn.Module):
    """Logit 0 is NaN times the input's sum: gradients are NaN everywhere (0 * NaN poisons logit 1's too)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        total = x.sum(dim=(1, 2, 3)) * self.scale
        return torch.stack([total * math.nan, total], dim=1)


class InputIgnored(nn.Module):
    """Logits that are a function of the weights only (the input is not in autograd's graph)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.3, -0.3]))

    def forward(self, x):
        return self.bias.expand(len(x), 2)


class InputTimesZero(InputIgnored):
    """Logits that use the input only multiplied by 0: in the graph, gradient exactly 0."""

    def forward(self, x):
        return self.bias.expand(len(x), 2) + 0.0 * x.sum(dim=(1, 2, 3))[:, None]


def caught(call):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]


def assert_warned(messages, fragment):
    assert any(fragment in m for m in messages), f"no warning with {fragment!r} among {messages}"


# ------------------------------------------------------------------ fusion and GAD
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_attributions_count_as_zero_with_a_warning(bad):
    maps = torch.rand(1, 2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).repeat(3, 1, 1, 1, 1)
    maps[0, 0, 0, :2, :2] = bad  # four pixels of the original's first map
    maps[2, 1] = bad  # the whole map of support 2, image 1
    result, messages = caught(lambda: fuse_maps(maps))
    assert_warned(messages, "attribution values are NaN or infinite; they count as importance 0")
    assert_warned(messages, "1 maps are all zero; they keep no pixel")
    assert torch.isfinite(result.gad).all() and torch.isfinite(result.importance).all()
    assert not result.masks[0, 0, :2, :2].any() and not result.consistency[1].any()
    assert result.consistency[0].any(), "image 0 keeps the pixels the three maps agree on"


def test_all_zero_maps_keep_no_pixel_with_a_warning():
    maps = torch.zeros(3, 2, 1, SIZE, SIZE)
    result, messages = caught(lambda: fuse_maps(maps))
    assert_warned(messages, "6 maps are all zero; they keep no pixel")
    assert not result.masks.any() and not result.consistency.any() and (result.gad == 0).all()


def test_a_model_with_nan_gradients_gives_a_finite_gad_map():
    model = NaNLogits()
    result, messages = caught(lambda: GAD("Saliency", model, [NaNLogits()]).attribute_detailed(images(), 0))
    assert_warned(messages, "NaN or infinite; they count as importance 0")
    assert_warned(messages, "6 maps are all zero; they keep no pixel")
    assert torch.isfinite(result.gad).all() and (result.gad == 0).all() and not result.consistency.any()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_class", [InputIgnored, InputTimesZero])
def test_logits_that_ignore_the_input_give_zero_maps_with_a_warning(model_class, method, fast):
    gad = GAD(method, model_class(), [model_class()], fast=fast)
    kwargs = {"n_steps": 4} if method == "IntegratedGradients" else {}
    result, messages = caught(lambda: gad.attribute_detailed(images(), target=None, **kwargs))
    assert result.gad.shape == images().shape and (result.gad == 0).all()
    assert (result.importance == 0).all() and not result.consistency.any()
    assert_warned(messages, "6 maps are all zero; they keep no pixel")
    if model_class is InputIgnored:
        assert_warned(messages, "the logits of the original, support 1 do not depend on the input")


def test_only_the_support_whose_logits_ignore_the_input_gets_a_zero_map():
    original = InputTimesZero()
    with torch.no_grad():
        original.bias.zero_()

    class Linear(InputTimesZero):  # same parameter names and shapes, logits that use the input
        def forward(self, x):
            flat = x.flatten(1).sum(1, keepdim=True)
            return torch.cat([flat * (1 + self.bias[0]), -flat * (1 + self.bias[1])], dim=1)

    gad = GAD("Saliency", Linear(), [InputIgnored(), Linear()], min_agreement=2)
    result, messages = caught(lambda: gad.attribute_detailed(images(), target=0))
    assert_warned(messages, "the logits of support 1 do not depend on the input")
    assert (result.importance[1] == 0).all() and (result.importance[0] > 0).all()
    assert torch.equal(result.importance[0], result.importance[2])
    assert result.consistency.any() and (result.gad != 0).any()


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("method", METHODS)
def test_a_constant_image_gives_finite_maps(method, level):
    image = torch.full((2, 1, SIZE, SIZE), level)
    kwargs = {"n_steps": 4} if method == "IntegratedGradients" else {}
    result, messages = caught(
        lambda: GAD(method, small_cnn(0), [small_cnn(1)]).attribute_detailed(image, target=0, **kwargs)
    )
    assert torch.isfinite(result.gad).all() and torch.isfinite(result.importance).all()
    if (result.importance == 0).all(dim=(-2, -1)).any():  # e.g. black image with a black baseline
        assert_warned(messages, "are all zero; they keep no pixel")


# ------------------------------------------------------------------ evaluation and summary
def importance_maps(n: int = 3, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    original = torch.rand(n, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    gad = torch.where(original > 0.8, original, torch.zeros(()))
    return original, gad


def evaluate(model, image_batch, original, gad):
    return evaluate_maps(model, image_batch, 0, original, gad, method="Saliency", rng=0, progress=False)


@pytest.mark.parametrize("which", ["original", "gad"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_importance_is_read_as_zero_with_a_warning(which, bad):
    original, gad = importance_maps()
    maps = {"original": original, "gad": gad}
    maps[which] = maps[which].clone()
    maps[which][0] = bad  # the whole map of image 0
    table, messages = caught(lambda: evaluate(small_cnn(), images(), maps["original"], maps["gad"]))
    assert_warned(messages, f"{which}_importance: {SIZE * SIZE} values are NaN or infinite")
    if which == "original":  # an empty GAD map is GAD's documented outcome: counted, not warned about
        assert_warned(messages, "1 maps are all zero; they keep no pixel")
    row = table[(table["image"] == 0) & (table["region_set"] == which)].iloc[0]
    assert row["n_pixels"] == 0 and math.isnan(row["rs"])  # an empty region: RS undefined, NaN
    rc = table[(table["image"] == 0) & (table["region_set"] == "gad")]["rc"].iloc[0]
    if which == "original":
        assert math.isnan(rc)
        assert_warned(messages, "relative complexity undefined for 1 of 3 maps")
    else:  # GAD kept nothing of image 0: RC 0, announced by the warnings above
        assert rc == 0.0
    others = table[table["image"] != 0]
    assert np.isfinite(others[others["region_set"].isin(["original", "gad"])]["rs"]).all()


def test_all_zero_maps_summarise_to_nan_with_warnings_and_write_as_null(tmp_path):
    zero = torch.zeros(3, SIZE, SIZE)
    table, messages = caught(lambda: evaluate(small_cnn(), images(), zero, zero))
    assert_warned(messages, "3 maps are all zero; they keep no pixel")
    assert_warned(messages, "relative complexity undefined for 3 of 3 maps")
    assert table["rc"].isna().all() and table["rs"].isna().all()
    summary = summarize(table)["Saliency"]
    assert summary["n_rc_nan"] == 3 and math.isnan(summary["rc_median"]) and math.isnan(summary["rc_below_1"])
    assert summary["n_rs_gad_rest_pairs"] == 0 and math.isnan(summary["rs_gad_beats_rest"])
    write_json(tmp_path / "summary.json", summarize(table))
    written = json.loads((tmp_path / "summary.json").read_text())["Saliency"]
    assert written["rc_median"] is None and written["n_rc_nan"] == 3


def test_a_model_whose_logits_ignore_the_input_has_zero_sensitivity():
    original, gad = importance_maps()
    table, _ = caught(lambda: evaluate(InputIgnored(), images(), original, gad))
    occluded = table[table["area_pixels"] > 0]
    assert len(occluded) > 0 and (occluded["score_drop"] == 0).all() and (occluded["rs"] == 0).all()
    assert table[table["area_pixels"] == 0]["rs"].isna().all()
    summary = summarize(table)["Saliency"]
    assert summary["rs_gad_mean"] == 0.0 and summary["rs_original_mean"] == 0.0


def test_a_constant_image_is_evaluated_with_every_fill():
    original, gad = importance_maps()
    image = torch.full((3, 1, SIZE, SIZE), 0.5)
    for fill in ("black", "mean", "blur"):
        table = evaluate_maps(
            small_cnn(), image, 0, original, gad, method="Saliency", rng=0, progress=False, fill=fill, mean=[0.5]
        )
        rows = table[table["area_pixels"] > 0]
        assert np.isfinite(rows["rs"]).all()
        if fill != "black":  # the fill equals the image: occluding changes nothing (up to round-off)
            assert (rows["score_drop"].abs() < 1e-6).all()
