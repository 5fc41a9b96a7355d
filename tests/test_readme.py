"""The README's code for researchers runs as written (on a small synthetic problem)."""

import json
import re
from pathlib import Path

import pytest
import torch

from gadlib.models.architectures import build_model
from gadlib.pipeline import readme
from gadlib.pipeline.params import validate_params

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet(section: str) -> str:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert len(blocks) == 1, f"expected one python block under '## {section}'"
    return blocks[0]


def test_using_gad_on_your_own_model_runs_as_written():
    torch.manual_seed(0)
    train_images = torch.rand(32, 1, 16, 16)
    train_labels = torch.arange(32) % 2
    train_images[train_labels == 1, :, :, :8] += 0.5  # a learnable difference
    model = build_model("small_cnn", 2, 1, 16, [0.5], [0.25]).eval()
    namespace = {
        "model": model,
        "train_images": train_images,
        "train_labels": train_labels,
        "images": train_images[:3],
        "k": 0,
        "l": 1,
    }
    exec(readme_snippet("Using GAD on your own model"), namespace)  # noqa: S102 - our own README
    assert namespace["attributions"].shape == (3, 1, 16, 16)
    assert len(namespace["supports"]) == 5
    assert namespace["details"] is not None


def test_docs_point_only_at_files_inside_the_repository():
    root = README.parent
    for doc in [README, *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert "../" not in text, f"{doc.name} points outside the repository"
        # backticked or linked paths under the repository's own folders must exist
        for path in set(re.findall(r"[`(]((?:gadlib|docs|notebooks|tests|bench|profiles)/[\w./-]+?)[`)]", text)):
            if "<" in path or "*" in path:
                continue
            assert (root / path).exists() or (doc.parent / path).exists(), (
                f"{doc.name} names {path}, which does not exist"
            )


# --------------------------------------------------------------------------- generated numbers
def test_the_readmes_numbers_are_those_of_the_committed_reports():
    text = README.read_text(encoding="utf-8")
    rendered = readme.render_blocks()
    current = readme.current_blocks(text, rendered)
    assert sorted(current) == sorted(rendered), "README.md lacks a generated block's markers"
    stale = [name for name in rendered if current[name] != rendered[name]]
    assert not stale, f"README.md's blocks {stale} differ from reports/ and params.yaml: run `make readme`"


def write_reports(root: Path, with_timings: bool = True) -> Path:
    """A reports/ folder with one experiment and method, a timings file and a CPU benchmark."""
    reports = root / "reports"
    (reports / "experiments" / "pair").mkdir(parents=True)
    (reports / "gpu").mkdir()
    test = {"verdict": "supported", "share_positive": 0.65, "share_negative": 0.3}
    metrics = {
        "pair": {
            "accuracy": 0.9,
            "methods": {
                "Saliency": {
                    "gad_empty": 0.25,
                    "rc_median_nonempty": 0.0123,
                    "tests": {"rc_below_1": dict(test, verdict="by construction", share_negative=1.0)}
                    | {"rs_gad_vs_rest": test, "rs_gad_vs_random": dict(test, verdict="not significant")},
                }
            },
        }
    }
    (reports / "metrics.json").write_text(json.dumps(metrics))
    classifier = {"accuracy": 0.9012, "n_test": 2000, "classes": ["T-shirt/top", "Shirt"]}
    (reports / "experiments" / "pair" / "classifier.json").write_text(json.dumps(classifier))
    if with_timings:
        stages = {"prepare": {"a": 10.0, "b": 5.5}, "train_classifier": {"a": 100.0, "b": None}}
        timings = {"stages": stages, "figures": 20.0, "total_seconds": 135.5}
        (reports / "timings.json").write_text(json.dumps(timings))
    bench = {
        "environment": {"device": "cpu", "cpu_count": 2},
        "config": {"architecture": "resnet18", "image_size": 32, "K": 5, "n_steps": 50},
        "attribution": [
            {
                "method": "IntegratedGradients",
                "captum_images_per_s": 19.93,
                "gad_images_per_s": 5.28,
                "gad_over_captum": 3.775,
            }
        ],
    }
    (reports / "bench.json").write_text(json.dumps(bench))
    gpu = dict(bench, environment={"device": "cuda", "device_name": "NVIDIA H200"})
    (reports / "gpu" / "bench_h200.json").write_text(json.dumps(gpu))
    return reports


def test_results_show_accuracy_empty_maps_rc_and_the_claims_verdicts(tmp_path):
    text = readme.render_results(write_reports(tmp_path))
    assert "Classifier test accuracy: T-shirt/top vs Shirt 0.901 (2,000 test images)." in text
    row = next(line for line in text.splitlines() if line.startswith("| pair |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "pair",
        "Saliency",
        "25%",
        "0.0123",
        "by construction (100%)",  # RC < 1: the share of images with RC below 1
        "supported (65%)",
        "not significant (65%)",
        "–",  # a claim the metrics lack
    ]


def test_timings_sum_each_stage_over_the_experiments(tmp_path):
    text = readme.render_timings(write_reports(tmp_path))
    assert "| `prepare` | 16 |" in text and "| `train_classifier` | 100 |" in text
    assert "| `attribute` | not recorded |" in text and "| `figures` | 20 |" in text
    assert "Total: **2 min 16 s**" in text
    assert "No timings yet" in readme.render_timings(write_reports(tmp_path / "fresh", with_timings=False))


def test_bench_rows_come_from_every_benchmark_file(tmp_path):
    lines = readme.render_bench(write_reports(tmp_path)).splitlines()
    assert lines[0].startswith("| machine | method | Captum img/s | GAD (K = 5) img/s")
    assert lines[2] == "| 2-core CPU, resnet18 32 px | IntegratedGradients (50 steps) | 19.9 | 5.3 | 3.77 |"
    assert lines[3].startswith("| NVIDIA H200, resnet18 32 px |")


def test_settings_follow_params(params):
    params["data"]["max_train_per_class"] = 1000
    params["classifier"].update(epochs=6, patience=None, schedule="constant")
    params["support"]["max_train_per_class"] = None
    text = readme.render_settings(validate_params(params))
    assert "1,000 training images per class (of 6,000)" in text
    assert "up to 6 epochs with a constant learning rate;" in text  # no early stopping without patience
    assert "the support models regress every training image" in text


def test_blocks_are_replaced_between_their_markers_and_missing_markers_are_named():
    text = "intro\n<!-- results:begin (generated) -->\nold\n<!-- results:end -->\nafter\n"
    assert readme.replace_blocks(text, {"results": "new\n"}) == (
        "intro\n<!-- results:begin (generated) -->\nnew\n<!-- results:end -->\nafter\n"
    )
    with pytest.raises(readme.ReadmeError, match="README.md has 0 'timings' blocks"):
        readme.replace_blocks(text, {"timings": "x\n"})
    with pytest.raises(readme.ReadmeError, match="has 2 'results' blocks"):
        readme.replace_blocks(text + text, {"results": "x\n"})
