"""The README's code for researchers runs as written: on a model defined here, on data gadlib does not ship."""

import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_code(section: str) -> str:
    """The python blocks under ``## section``, joined in order."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
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


def test_using_gad_on_your_own_model_runs_as_written(one_thread):
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
    namespace = {
        "model": model,
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
        "images": images[test][:4],
        "k": 0,
        "l": 1,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(readme_code("Using GAD on your own model"), namespace)  # noqa: S102 - our own README
    messages = [str(w.message) for w in caught]
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
