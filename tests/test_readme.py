"""The README's code for researchers runs as written (on a small synthetic problem)."""

import re
from pathlib import Path

import torch

from gadlib.models.architectures import build_model

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
