"""Quantus's metrics through the adapter on tiny models: each checked for something that could be false."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from gadlib.evaluation.quantus_adapter import QuantusExplainFunc
from gadlib.evaluation.standard_metrics import (
    METRIC_DIRECTIONS,
    STANDARD_METRICS,
    TABLE_COLUMNS,
    spearman_rows,
    standard_metrics,
    summarize_standard_metrics,
)
from gadlib.method.gad import GAD

quantus = pytest.importorskip("quantus")

H = W = 8
QUIET = {"disable_warnings": True, "display_progressbar": False}


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * H * W, 2),
    ).eval()


def images(n=4, seed=0):
    return torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(seed))


def agreeing_gad(method="Saliency"):
    """Support models equal to the original: the GAD map is the original's top 10%, never empty."""
    model = small_cnn()
    return GAD(method, model, [copy.deepcopy(model), copy.deepcopy(model)])


def values(table, which, metric):
    rows = table[(table["map"] == which) & (table["metric"] == metric)]
    return rows["value"].to_numpy()


def test_the_table_and_its_summary():
    gad = agreeing_gad()
    table = standard_metrics(gad, images(), 0)
    assert list(table.columns) == list(TABLE_COLUMNS) and len(table) == 4 * 2 * len(STANDARD_METRICS)
    assert set(table["method"]) == {"Saliency"} and not table["empty"].any()
    assert np.isfinite(table["value"]).all()
    summary = summarize_standard_metrics(table)
    assert summary["direction"] == METRIC_DIRECTIONS and set(summary["Saliency"]) == {"original", "gad"}
    stats = summary["Saliency"]["gad"]["sparseness"]
    assert stats["n"] == 4 and stats["n_nan"] == 0 and stats["q25"] <= stats["median"] <= stats["q75"]
    for metric, direction in METRIC_DIRECTIONS.items():
        assert direction.startswith(("higher", "lower")), metric


def test_sparseness_and_complexity_see_the_gad_map_as_sparser_and_simpler():
    table = standard_metrics(agreeing_gad(), images(), 0, metrics=("sparseness", "complexity"))
    # the GAD map keeps the original's top 10% only: sparser (higher Gini), simpler (lower entropy)
    assert (values(table, "gad", "sparseness") > values(table, "original", "sparseness")).all()
    assert (values(table, "gad", "complexity") < values(table, "original", "complexity")).all()


def test_sparseness_of_a_one_pixel_map_beats_a_uniform_one():
    model, x = small_cnn(), images(2).numpy()
    one_pixel = np.zeros_like(x)
    one_pixel[:, 0, 3, 3] = 1.0
    nearly_uniform = 1.0 + 0.01 * np.random.default_rng(0).random(x.shape).astype(np.float32)
    score = lambda a: np.asarray(
        quantus.Sparseness(**QUIET)(model=model, x_batch=x, y_batch=np.zeros(2, int), a_batch=a)
    )
    assert (score(one_pixel) > 0.9).all() and (score(nearly_uniform) < 0.1).all()


def test_pixel_flipping_drops_the_score_faster_along_the_map_than_along_a_random_order():
    # logit 0 = weighted sum of the left half: InputXGradient's map ranks the pixels by their contribution
    model = nn.Sequential(nn.Flatten(), nn.Linear(H * W, 2, bias=False))
    with torch.no_grad():
        weights = torch.zeros(H, W)
        weights[:, : W // 2] = torch.linspace(0.1, 1.0, H * W // 2).reshape(H, W // 2)
        model[1].weight.copy_(torch.stack([weights.flatten(), torch.zeros(H * W)]))
    gad = GAD("InputXGradient", model.eval(), [copy.deepcopy(model)])
    x = images(3, seed=1)
    table = standard_metrics(gad, x, 0, maps=("original",), metrics=("pixel_flipping",))
    along_map = values(table, "original", "pixel_flipping")
    random_order = np.random.default_rng(0).random(x.shape).astype(np.float32)
    curves = np.asarray(
        quantus.PixelFlipping(features_in_step=W, perturb_baseline=0.0, **QUIET)(
            model=model, x_batch=x.numpy(), y_batch=np.zeros(3, int), a_batch=random_order, softmax=False
        )
    )
    random_mean = np.trapezoid(curves, axis=1) / (curves.shape[1] - 1)
    assert (along_map < random_mean).all()


def test_the_randomisation_test_tells_a_map_that_depends_on_the_weights_from_one_that_does_not():
    gad = agreeing_gad("IntegratedGradients")
    model, x, y = gad.models[0], images().numpy(), np.zeros(4, int)
    explain = QuantusExplainFunc(gad, output="original", n_steps=8)
    mprt = lambda explain_func, a: np.asarray(
        quantus.MPRT(similarity_func=spearman_rows, skip_layers=True, return_last_correlation=True, **QUIET)(
            model=model, x_batch=x, y_batch=y, a_batch=a, explain_func=explain_func, softmax=False
        )
    )
    the_image = lambda model, inputs, targets, **kwargs: np.asarray(inputs).copy()  # ignores the weights
    weightless = mprt(the_image, x.copy())
    learned = mprt(explain, explain(model, x, y))
    assert weightless == pytest.approx(1.0) and (learned < 0.9).all()
    table = standard_metrics(gad, x, 0, metrics=("randomisation",), n_steps=8)
    assert (values(table, "original", "randomisation") < 0.9).all()
    assert (values(table, "gad", "randomisation") < 0.9).all()


def test_an_empty_gad_map_has_no_value_and_is_counted():
    # supports whose maps share no top pixel with the original's: an empty GAD map
    model = nn.Sequential(nn.Flatten(), nn.Linear(H * W, 2, bias=False))
    other = copy.deepcopy(model)
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0, : H * W // 2] = torch.linspace(0.1, 1.0, H * W // 2)
        other[1].weight.zero_()
        other[1].weight[0, H * W // 2 :] = torch.linspace(0.1, 1.0, H * W // 2)
    table = standard_metrics(GAD("Saliency", model.eval(), [other.eval()]), images(2), 0)
    gad_rows = table[table["map"] == "gad"]
    assert gad_rows["empty"].all() and gad_rows["value"].isna().all()
    assert np.isfinite(table[table["map"] == "original"]["value"]).all()
    summary = summarize_standard_metrics(table)["Saliency"]["gad"]["sparseness"]
    assert summary["n"] == 0 and summary["n_nan"] == 2 and math.isnan(summary["median"])


def test_spearman_rows_is_nan_for_a_constant_map():
    a = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = np.array([[1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    result = spearman_rows(a, b)
    assert result[0] == pytest.approx(0.5) and math.isnan(result[1])


def test_bad_arguments_are_named():
    gad = agreeing_gad()
    with pytest.raises(ValueError, match="features_in_step must divide H \\* W = 64"):
        standard_metrics(gad, images(), 0, features_in_step=7)
    with pytest.raises(ValueError, match="unknown or no metrics/maps \\['faithfulness'\\]"):
        standard_metrics(gad, images(), 0, metrics=("faithfulness",))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        standard_metrics(gad, images() * 3, 0)
