"""README.md and docs/: the code for researchers runs as written (on a model defined here, on data
gadlib does not ship), every path they name exists, the README stays a three-minute read, and the
generated numbers are those of the committed reports."""

import json
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

from gadlib.project.params import validate_params  # noqa: E402
from tests.fixtures import ROOT  # noqa: E402
from tools import readme  # noqa: E402

README = ROOT / "README.md"
LIBRARY = ROOT / "docs" / "library.md"


def readme_code(section: str | None, doc: Path = README) -> str:
    """The python blocks under ``## section`` (None: the whole document), joined in order."""
    text = doc.read_text(encoding="utf-8")
    body = text if section is None else text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert blocks, f"no python block under '## {section}'"
    return "\n".join(blocks)


class Standardise(nn.Module):
    """The model's own normalisation: it takes pixel-space images in [0, 1], as GAD assumes."""

    def forward(self, x):
        return (x - 0.3) / 0.4


def digits_3_vs_8():
    """scikit-learn's handwritten digits (not shipped by gadlib), 3 against 8, 8 x 8 px in [0, 1]."""
    digits = load_digits()
    keep = np.isin(digits.target, (3, 8))
    images = torch.tensor(digits.images[keep] / 16.0, dtype=torch.float32)[:, None]
    labels = torch.tensor((digits.target[keep] == 8).astype(np.int64))  # 0: a three, 1: an eight
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order], labels[order]


def own_small_cnn():
    """A researcher's own model (not gadlib's build_model), trained here on the digits."""
    torch.manual_seed(0)
    return nn.Sequential(
        Standardise(),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 2),
    )


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and a machine shared with another job slows two down a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def digits_model_and_data():
    """The researcher's own CNN trained on 285 digits, and the names the documents' code uses."""
    images, labels = digits_3_vs_8()
    train, test = slice(0, 285), slice(285, None)
    model = own_small_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(6):
        for start in range(0, 285, 32):
            batch = slice(start, min(start + 32, 285))
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(images[train][batch]), labels[train][batch]).backward()
            optimiser.step()
    model.eval()
    assert (model(images[test]).argmax(dim=1) == labels[test]).float().mean() > 0.9
    return {
        "model": model,
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
        "images": images[test][:4],
        "k": 0,
        "l": 1,
    }


def run_code(code: str, namespace: dict) -> list[str]:
    """Run a document's code in ``namespace``; the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(code, namespace)  # noqa: S102 - our own documents
    return [str(w.message) for w in caught]


def test_the_readmes_own_model_snippet_runs_as_written(one_thread):
    namespace = digits_model_and_data()
    messages = run_code(readme_code("GAD on your own model"), namespace)
    assert namespace["attributions"].shape == (4, 1, 8, 8)
    assert len(namespace["supports"]) == 5
    table = namespace["table"]
    assert set(table["region_set"]) >= {"original", "gad", "rest"} and len(table["image"].unique()) == 4
    gad, original = namespace["attributions"], namespace["original"]
    kept = gad != 0
    assert torch.equal(gad[kept], original[kept]), "GAD keeps the original's attribution inside its mask"
    assert not any("outside [0, 1]" in m for m in messages), "pixel-space images raise no range warning"


def test_the_library_guide_runs_as_written(one_thread):
    namespace = digits_model_and_data()
    messages = run_code(readme_code(None, LIBRARY), namespace)
    assert namespace["attributions"].shape == (4, 1, 8, 8)
    supports = namespace["supports"]
    assert len(supports) == 5 and supports.steps >= 80
    # the default lr (1e-4) on 285 images falls short, and the warning says which knobs to turn
    if min(supports.margin_reached) < 0.8:
        assert any("under-trained" in m and "lr" in m and "min_steps" in m for m in messages), messages
    assert len(namespace["fidelity"]) == 6
    table = namespace["table"]
    assert set(table["region_set"]) >= {"original", "gad", "rest"} and len(table["image"].unique()) == 4
    assert len(namespace["sparseness"]) == 4
    metrics = namespace["metrics"]
    assert set(metrics["direction"]) == {"sparseness", "complexity", "pixel_flipping", "randomisation"}
    assert set(metrics["IntegratedGradients"]) == {"original", "gad"}
    assert not any("outside [0, 1]" in m for m in messages), "pixel-space images raise no range warning"


def test_the_readme_is_a_three_minute_read():
    words = len(README.read_text(encoding="utf-8").split())
    assert words <= 1200, f"README.md has {words} words; move detail to docs/"


def test_docs_point_only_at_files_inside_the_repository():
    root = README.parent
    for doc in [README, *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert "../" not in text, f"{doc.name} points outside the repository"
        # backticked or linked paths under the repository's own folders must exist
        for path in set(re.findall(r"[`(]((?:gadlib|docs|notebooks|tests|tools|bench|profiles)/[\w./-]+?)[`)]", text)):
            if "<" in path or "*" in path:
                continue
            assert (root / path).exists() or (doc.parent / path).exists(), (
                f"{doc.name} names {path}, which does not exist"
            )


# --------------------------------------------------------------------------- generated numbers
def test_the_documents_numbers_are_those_of_the_committed_reports():
    rendered = readme.render_blocks()
    held = [block for blocks in readme.BLOCK_FILES.values() for block in blocks]
    assert sorted(held) == sorted(rendered), "every generated block lives in one document"
    for name, blocks in readme.BLOCK_FILES.items():
        current = readme.current_blocks((ROOT / name).read_text(encoding="utf-8"), blocks)
        assert sorted(current) == sorted(blocks), f"{name} lacks a generated block's markers"
        stale = [b for b in blocks if b not in readme.MACHINE_DEPENDENT and current[b] != rendered[b]]
        assert not stale, f"{name}'s blocks {stale} differ from reports/ and params.yaml: run `make readme`"


def test_a_run_on_another_machine_changes_only_blocks_the_check_skips(tmp_path, monkeypatch):
    # what `make repro` then `make test` does on a new machine: timings.json rewritten, then --check
    for name in readme.BLOCK_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(readme, "ROOT", tmp_path)
    real = readme.render_blocks
    monkeypatch.setattr(readme, "render_blocks", lambda: real() | {"timings": "| `prepare` | 99 |\n"})
    assert readme.main(["--check"]) == 0
    monkeypatch.setattr(readme, "render_blocks", lambda: real() | {"results": "other\n"})
    assert readme.main(["--check"]) == 1


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


def test_support_size_rows_summarise_each_size(tmp_path):
    reports = write_reports(tmp_path)
    assert "No support-size study yet" in readme.render_support_size(reports)
    rows = [
        # size, experiment, method, empty, RC, verdict, agreement, margin reached, training seconds
        (250, "a", "IG", 0.0, 0.4, "supported", 0.98, 0.6, 50.0),
        (250, "a", "Saliency", 0.1, 0.6, "not significant", 0.98, 0.6, 50.0),
        (250, "b", "IG", 0.2, 0.8, "not significant", 0.96, 0.8, 70.0),
        (500, "a", "IG", 0.0, 0.5, "contradicted", 0.99, 0.7, 100.0),
        (1000, "a", "IG", 0.0, 0.3, "supported", 0.95, None, 180.0),  # a run without per-model margins
    ]
    columns = [
        "images_per_class",
        "experiment",
        "method",
        "gad_empty",
        "rc_median_nonempty",
        "rs_verdict",
        "support_agreement",
        "margin_reached",
        "support_train_seconds",
    ]
    (reports / "open_questions").mkdir()
    pd.DataFrame(rows, columns=columns).to_csv(reports / "open_questions" / "support_size.csv", index=False)
    lines = readme.render_support_size(reports).splitlines()
    assert lines[2] == "| 250 | 120 | 0.67 | 0.973 | 10% | 0.6 | 2 not significant, 1 supported (of 3) |"
    assert lines[3] == "| 500 | 100 | 0.70 | 0.990 | 0% | 0.5 | 1 contradicted (of 1) |"
    assert lines[4] == "| 1,000 | 180 | not recorded | 0.950 | 0% | 0.3 | 1 supported (of 1) |"


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
