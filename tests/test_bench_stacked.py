"""The benchmark's stacked-models experiment (bench/stacked.py) and its section of bench/bench.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gadlib.models.architectures import build_model

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
from accelerated import attribute_models, fold_batchnorm_copy  # noqa: E402
from stacked import stacked_integrated_gradients  # noqa: E402


def three_models():
    torch.manual_seed(0)
    return [build_model("resnet18", 2, 3, 32, [0.5] * 3, [0.25] * 3).eval() for _ in range(3)]


@pytest.mark.parametrize("fold", [False, True])
def test_stacked_models_give_each_model_its_own_integrated_gradients(fold):
    models = three_models()
    inputs, target = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 1, 0])
    expected = attribute_models(
        "IntegratedGradients", models, inputs, target, n_steps=6, internal_batch_size=12, fold_batchnorm=fold
    )  # folding rounds differently: compare like with like
    stacked_models = [fold_batchnorm_copy(m) for m in models] if fold else models
    # 3 steps per pass: the sum over passes is exercised too
    maps = stacked_integrated_gradients(stacked_models, inputs, target, n_steps=6, rows_per_pass=36)
    assert maps.shape == (3, 4, 3, 32, 32)
    # grouped convolutions round differently; along the path a ReLU or max-pool near a tie then sends
    # a gradient elsewhere (bench/accelerated.py's bound for such changes: 2e-3)
    for m in range(3):
        error = float((maps[m] - expected[m]).norm() / expected[m].norm())
        assert error < 2e-3, f"model {m}: relative error {error}"
    assert float((expected[0] - expected[1]).norm() / expected[0].norm()) > 0.1  # the models differ


def test_stacked_models_refuse_a_mixed_set():
    models = three_models()
    other = build_model("small_cnn", 2, 3, 32, [0.5] * 3, [0.25] * 3).eval()
    with pytest.raises(ValueError, match="do not share one architecture"):
        stacked_integrated_gradients([models[0], other], torch.rand(1, 3, 32, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match="eval-mode"):
        stacked_integrated_gradients([models[0].train()], torch.rand(1, 3, 32, 32), torch.tensor([0]))


def test_bench_stacked_section_writes_its_rows(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench.py"),
            "--quick",
            "--sections",
            "stacked",
            "-K",
            "2",
            "--n-images",
            "2",
            "--n-steps",
            "4",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    rows = json.loads(out.read_text())["stacked_models"]
    assert [row["models"] for row in rows] == [3] * len(rows)
    assert all("error" not in row for row in rows)
    stacked = [row for row in rows if row["variant"].startswith("stacked")]
    # grouped convolutions round differently: single pixels move, as with folding (the bound 2e-3)
    assert stacked and all(row["agreement_with_sequential"]["relative_error"] < 2e-3 for row in stacked)
