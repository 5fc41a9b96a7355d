"""Benchmark: cost of evaluating one map pair (hulls, RC, and optionally the occlusion passes).

Runs :func:`gadlib.evaluation.table.evaluate_maps` on synthetic maps on one CPU thread with a torchvision
ResNet18 (random weights, 2 outputs). ``run`` is importable by the project benchmark; the command line
prints its result as JSON:

    PYTHONPATH=. python bench/bench_regions.py --image-size 224 --n-maps 16 --occlusion
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torchvision
from scipy import ndimage

from gadlib.evaluation.table import evaluate_maps


def synthetic_maps(n_maps: int, image_size: int, rng: np.random.Generator, smoothing: float = 1.0):
    """Original and GAD-like importance maps, (N, H, W) float32 tensors.

    Original: |Gaussian-smoothed noise| (speckled, like gradient maps). GAD: the original where it
    is in its own top 10% and in the top 10% of a second, independent map (a stand-in for the
    consistency mask over support models).
    """
    shape = (n_maps, image_size, image_size)
    noise = rng.standard_normal((2, *shape))
    smooth = np.abs(ndimage.gaussian_filter(noise, sigma=(0, 0, smoothing, smoothing)))
    original, support = smooth[0], smooth[1]
    top = lambda m: m >= np.quantile(m.reshape(n_maps, -1), 0.9, axis=1)[:, None, None]  # noqa: E731
    gad = np.where(top(original) & top(support), original, 0.0)
    return torch.from_numpy(original.astype(np.float32)), torch.from_numpy(gad.astype(np.float32))


def run(image_size: int, n_maps: int, occlusion: bool, seed: int = 0, smoothing: float = 1.0) -> dict:
    """Time evaluate_maps on ``n_maps`` synthetic map pairs on one CPU thread.

    Parameters
    ----------
    image_size : H = W of the images and maps
    n_maps : number of images (each has an original and a GAD map: 4 region sets)
    occlusion : include the (4 sets + clean) x n_maps ResNet18 forward passes
    seed : seed of the synthetic maps and the random control sets
    smoothing : Gaussian sigma (pixels) of the synthetic maps; smaller = more, smaller regions

    Returns
    -------
    dict with image_size, n_maps, occlusion, seconds, maps_per_second, seconds_per_map,
    mean_regions_original, mean_rc, forward_passes, torch_threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        original, gad = synthetic_maps(n_maps, image_size, rng, smoothing)
        images = torch.rand(n_maps, 3, image_size, image_size)
        model = torchvision.models.resnet18(weights=None, num_classes=2).eval()
        targets = torch.zeros(n_maps, dtype=torch.long)
        start = time.perf_counter()
        table = evaluate_maps(
            model,
            images,
            targets,
            original,
            gad,
            method="bench",
            rng=rng,
            occlusion=occlusion,
            progress=False,
            batch_size=64,
        )
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    orig_rows = table[table.region_set == "original"]
    gad_rows = table[table.region_set == "gad"]
    return {
        "image_size": image_size,
        "n_maps": n_maps,
        "occlusion": occlusion,
        "seconds": seconds,
        "maps_per_second": n_maps / seconds,
        "seconds_per_map": seconds / n_maps,
        "mean_regions_original": float(orig_rows["n_regions"].mean()),
        "mean_regions_gad": float(gad_rows["n_regions"].mean()),
        "mean_rc": float(np.nanmean(gad_rows["rc"])),
        "forward_passes": 5 * n_maps if occlusion else 0,
        "torch_threads": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--n-maps", type=int, default=64)
    parser.add_argument("--occlusion", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.image_size, args.n_maps, args.occlusion), indent=2))


if __name__ == "__main__":
    main()
