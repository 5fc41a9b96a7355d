"""Benchmark: what GAD costs against plain Captum, side by side in one run, on the same images.

For each attribution method it times plain Captum on the original model against the full GAD with
K support models (all K+1 attributions through the batched path, accelerated as ``bench/accelerated.py``
allows, then the fusion), and reports images/s, the ratio GAD/Captum (the CPU goal: at most K+1),
peak memory and how closely GAD's map of the original agrees with Captum's. On CUDA it also times the
accelerations on one model (float32, bfloat16 + channels_last, + batch-norm folding) against float32
Captum, with the agreement, and checks the GPU goal (GAD-IG with K = 5 at least as many images/s as Captum's IG on
one model). Then support-model training throughput (MSE on logits, Adam) and the hull metrics with
and without occlusion (``bench/bench_regions.py``). Models have random weights; the K supports are
the original with its weights perturbed. Results go to ``reports/bench.json`` (atomically).

    python bench/bench.py                       # CPU defaults: 32 px ResNet18, 64 images, K = 5
    python bench/bench.py --device cuda --image-size 224 --n-images 128
    python bench/bench.py --quick               # a smoke run in well under a minute

"Captum fp32" means true float32: on CUDA TF32 is switched off for the whole run (the reference
figures in the performance spec do the same); GAD here uses bfloat16 autocast on CUDA (``--precision``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "bench"):  # gadlib without installing it; the bench modules beside this script
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from accelerated import attribute_models, auto_internal_batch_size, fold_batchnorm_copy  # noqa: E402
from captum.attr import InputXGradient, IntegratedGradients, Saliency  # noqa: E402
from stacked import stacked_integrated_gradients  # noqa: E402

from gadlib.choices import BATCHED_METHODS  # noqa: E402
from gadlib.common.atomic import write_json  # noqa: E402
from gadlib.method.fusion import binarize, pixel_importance  # noqa: E402
from gadlib.models.architectures import ARCHITECTURES, build_model  # noqa: E402

CAPTUM_CLASSES = {"IntegratedGradients": IntegratedGradients, "Saliency": Saliency, "InputXGradient": InputXGradient}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # --precision
SUPPORT_PERTURBATION = 0.05  # relative size of the random change of each weight tensor of a support


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:index]")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32, help="images per attribution call (both sides)")
    parser.add_argument("--n-images", type=int, default=64, help="images timed per method and side")
    parser.add_argument("-K", "--supports", dest="K", type=int, default=5, help="support models")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="resnet18")
    parser.add_argument("--methods", default=",".join(BATCHED_METHODS), help="comma-separated")
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument(
        "--internal-batch-size",
        type=int,
        default=None,
        help="rows per pass for both Captum's IG and GAD (default: "
        "gadlib.method.batched.auto_internal_batch_size, for each side's precision)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per side, interleaved; the best counts (default 3 CPU, 2 CUDA)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", *AUTOCAST_DTYPES),
        default="auto",
        help="GAD fast path: auto = bf16 autocast on CUDA, fp32 on the CPU",
    )
    parser.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="GAD fast path: auto = on for CUDA; on the CPU on for IG only (measured "
        "faster there, slower for the one-pass methods)",
    )
    parser.add_argument(
        "--fold-batchnorm",
        choices=("on", "off"),
        default="on",
        help="GAD fast path: fold batch norm into the convolutions (once per model)",
    )
    parser.add_argument(
        "--affine-stem",
        choices=("on", "off"),
        default="on",
        help="GAD fast path, IG: run the affine stem once per image, not per step",
    )
    parser.add_argument(
        "--sections",
        default="attribution,one_model,training,regions",
        help="comma-separated; one_model (the fast path's variants on one model) runs on "
        "CUDA only unless it is the only section; stacked (GAD-IG with the K+1 models "
        "in one vectorised pass, bench/stacked.py, against one after the other) on request",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="one_model: also time torch.compile on the folded model (compiles for a minute)",
    )
    parser.add_argument(
        "--train-images", type=int, default=None, help="images per timed training epoch (default 2048 CPU, 4096 CUDA)"
    )
    parser.add_argument("--train-batch", type=int, default=None, help="default 128 (the support models' batch)")
    parser.add_argument("--region-maps", type=int, default=None, help="maps for the hull metrics (default 16)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench.json")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 8 images, 8 IG steps, 1 repeat, small training and region runs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_images, args.batch = min(args.n_images, 8), min(args.batch, 8)
        args.n_steps = min(args.n_steps, 8)
        args.repeats = args.repeats or 1
        args.train_images = args.train_images or 128
        args.region_maps = args.region_maps or 4
    for name in ("image_size", "batch", "n_images", "n_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.K < 0:
        raise SystemExit("-K must be >= 0")
    unknown = sorted(set(args.methods.split(",")) - set(BATCHED_METHODS))
    if unknown:
        raise SystemExit(f"--methods {unknown} are not benchmarked; choose from {BATCHED_METHODS}")
    unknown = sorted(set(args.sections.split(",")) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--sections {unknown} are unknown; choose from {SECTIONS}")
    return args


SECTIONS = ("attribution", "one_model", "stacked", "training", "regions")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from gadlib.models.training import select_device

    device = select_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        _strict_fp32()
    sections = args.sections.split(",")
    repeats = args.repeats or (2 if cuda else 3)

    generator = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.n_images, 3, args.image_size, args.image_size, generator=generator).to(device)
    torch.manual_seed(args.seed)
    original = build_model(args.architecture, 2, 3, args.image_size, MEAN, STD).eval().to(device)
    supports = [perturbed_copy(original, SUPPORT_PERTURBATION, seed=args.seed + 1 + k) for k in range(args.K)]
    with torch.no_grad():
        targets = torch.cat([original(images[i : i + args.batch]) for i in range(0, len(images), args.batch)]).argmax(
            dim=1
        )
    internal_batch = args.internal_batch_size or auto_internal_batch_size(
        original, (3, args.image_size, args.image_size), device
    )

    report: dict[str, Any] = {
        "environment": environment(device),
        "config": {
            "architecture": args.architecture,
            "image_size": args.image_size,
            "batch": args.batch,
            "n_images": args.n_images,
            "K": args.K,
            "n_steps": args.n_steps,
            "captum_internal_batch_size": internal_batch,
            "repeats": repeats,
            "seed": args.seed,
            "captum": "float32" + (" (TF32 off)" if cuda else ""),
            "quick": args.quick,
            "sections": sections,
        },
    }
    load = report["environment"].get("load_average_at_start", [0.0])[0]
    if not cuda and load > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load:.1f} at start: other jobs share the CPU, timings will be noisy")
    print(
        f"== {report['environment']['device_name']}, torch {torch.__version__}, {args.architecture} "
        f"{args.image_size}px, {args.n_images} images in batches of {args.batch}, K = {args.K}, "
        f"IG steps {args.n_steps}, Captum internal batch {internal_batch}",
        flush=True,
    )

    if "attribution" in sections:
        report["attribution"] = []
        for method in args.methods.split(","):
            row = bench_method(
                method,
                original,
                supports,
                images,
                targets,
                args,
                internal_batch,
                fast_options_for(method, args, cuda),
                repeats,
                device,
            )
            report["attribution"].append(row)
            print(
                f"   {method}: Captum {row['captum_images_per_s']:.1f} img/s, GAD "
                f"{row['gad_images_per_s']:.1f} img/s, ratio {row['gad_over_captum']:.2f} "
                f"(K+1 = {args.K + 1})",
                flush=True,
            )
        report["cpu_goal"] = {
            "goal": "GAD/Captum <= K+1 for every method",
            "met": all(row["gad_over_captum"] <= args.K + 1 for row in report["attribution"]),
        }
        report["gpu_goal"] = gpu_goal(report, args, cuda)
    if "one_model" in sections and (cuda or sections == ["one_model"]):
        report["fast_path_one_model"] = bench_one_model(
            original, images, targets, args, internal_batch, repeats, device
        )
    if "stacked" in sections:
        report["stacked_models"] = bench_stacked(original, supports, images, targets, args, repeats, device, cuda)
    if "training" in sections:
        report["training"] = bench_training(original, args, device, cuda)
        print(f"   training: {report['training']['images_per_s']:.0f} img/s (fused Adam)", flush=True)
    if "regions" in sections:
        report["regions"] = bench_regions(args)
    if hasattr(os, "getloadavg"):
        report["environment"]["load_average_at_end"] = list(os.getloadavg())
    write_json(args.out, report)
    print_table(report)
    print(f"written to {args.out}")
    return report


def fast_options_for(method: str, args, cuda: bool) -> dict:
    """The GAD fast path's settings for one method (see --precision, --channels-last, ...)."""
    is_ig = method == "IntegratedGradients"
    precision = ("bf16" if cuda else "fp32") if args.precision == "auto" else args.precision
    return {
        "autocast_dtype": AUTOCAST_DTYPES[precision],
        "channels_last": args.channels_last == "on" or (args.channels_last == "auto" and (cuda or is_ig)),
        "fold_batchnorm": args.fold_batchnorm == "on",
        "affine_stem": args.affine_stem == "on" and is_ig,
    }


def perturbed_copy(model: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """A stand-in support model: every parameter moved by ``scale`` x its own std, in random directions."""
    support = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in support.parameters():
            noise = torch.randn(param.shape, generator=generator).to(param.device)
            param.add_(noise * scale * (param.float().std() if param.numel() > 1 else 1.0))
    return support.eval()


def prepare_models(models: list[torch.nn.Module], options: dict) -> list[torch.nn.Module]:
    """Batch norm folded into the convolutions (copies), in channels_last layout when asked."""
    if not options.get("fold_batchnorm"):
        return models
    prepared = []
    for model in models:
        folded = fold_batchnorm_copy(model)
        if options.get("channels_last") and folded is not model:
            folded = folded.to(memory_format=torch.channels_last)
        prepared.append(folded)
    return prepared


def bench_method(
    method, original, supports, images, targets, args, internal_batch, fast_options, repeats, device
) -> dict:
    """Captum on the original against GAD (K+1 models, fast path + fusion), interleaved runs."""
    from gadlib.method.gad import fuse_maps

    is_ig = method == "IntegratedGradients"
    captum_kwargs = {"n_steps": args.n_steps, "internal_batch_size": internal_batch} if is_ig else {}
    captum_method = CAPTUM_CLASSES[method](original)
    models = [original, *supports]
    # GAD folds batch norm once per set of models (a GAD object is built once, then called per batch)
    fold_start = time.perf_counter()
    fast_models = prepare_models(models, fast_options)
    fold_seconds = time.perf_counter() - fold_start
    call_options = {**fast_options, "fold_batchnorm": False}
    # the fast path's own memory estimate (bfloat16 halves it); Captum gets the float32 one
    fast_batch = args.internal_batch_size or auto_internal_batch_size(
        original, tuple(images.shape[1:]), device, autocast_dtype=fast_options["autocast_dtype"]
    )

    def captum_run() -> torch.Tensor:
        return torch.cat(
            [
                captum_method.attribute(
                    chunk.clone().requires_grad_(True), target=chunk_targets, **captum_kwargs
                ).detach()
                for chunk, chunk_targets in batches(images, targets, args.batch)
            ]
        )

    def gad_run() -> torch.Tensor:
        original_maps = []
        for chunk, chunk_targets in batches(images, targets, args.batch):
            chunk_maps = attribute_models(
                method,
                fast_models,
                chunk,
                chunk_targets,
                n_steps=args.n_steps,
                internal_batch_size=fast_batch,
                **call_options,
            )
            fuse_maps(chunk_maps)  # the GAD map: part of the cost
            original_maps.append(chunk_maps[0])
        return torch.cat(original_maps)

    if device.type == "cuda":  # first-call costs (cuDNN plans, allocator) out of the timed runs
        captum_run()
        gad_run()
    captum = gad = None
    for _ in range(repeats):  # interleaved, so both sides see the same background load
        captum = best_of(captum, timed_runs(captum_run, 1, device))
        gad = best_of(gad, timed_runs(gad_run, 1, device))
    n = len(images)
    return {
        "method": method,
        "gad_fast_path": {k: str(v) if isinstance(v, torch.dtype) else v for k, v in fast_options.items()},
        "captum_internal_batch_size": internal_batch if is_ig else None,
        "gad_internal_batch_size": fast_batch if is_ig else None,
        "fold_seconds_once": fold_seconds,
        "captum_seconds": captum["seconds"],
        "gad_seconds": gad["seconds"],
        "captum_images_per_s": n / captum["seconds"],
        "gad_images_per_s": n / gad["seconds"],
        "gad_over_captum": gad["seconds"] / captum["seconds"],
        "k_plus_1": len(models),
        "captum_peak_mb": captum["peak_mb"],
        "gad_peak_mb": gad["peak_mb"],
        "agreement_original": agreement(gad["result"], captum["result"]),
    }


def bench_one_model(original, images, targets, args, internal_batch, repeats, device) -> list[dict]:
    """IG of the original model alone: the fast path's settings, one by one, against float32 Captum."""
    cuda = device.type == "cuda"
    ig = IntegratedGradients(original)

    def captum_run() -> torch.Tensor:
        return torch.cat(
            [
                ig.attribute(c, target=t, n_steps=args.n_steps, internal_batch_size=internal_batch)
                for c, t in batches(images, targets, args.batch)
            ]
        )

    bf16 = {"autocast_dtype": torch.bfloat16, "channels_last": True}
    variants = [
        ("fast fp32", {}),
        ("fast fp32 + fold + affine stem", {"fold_batchnorm": True, "affine_stem": True}),
        ("fast bf16 + channels_last", bf16),
        ("fast bf16 + channels_last + fold", {**bf16, "fold_batchnorm": True}),
        ("fast bf16 + channels_last + fold + affine stem (GAD)", {**bf16, "fold_batchnorm": True, "affine_stem": True}),
        # float16 has 3 more mantissa bits than bfloat16 and the same tensor-core rate on recent GPUs
        (
            "fast fp16 + channels_last + fold + affine stem",
            {**bf16, "autocast_dtype": torch.float16, "fold_batchnorm": True, "affine_stem": True},
        ),
    ]
    if cuda:
        variants.append(
            ("same + cudnn.benchmark", {**bf16, "fold_batchnorm": True, "affine_stem": True, "cudnn_benchmark": True})
        )
    if args.compile:
        variants.append(
            ("fast bf16 + channels_last + fold + torch.compile", {**bf16, "fold_batchnorm": True, "compile": True})
        )
    captum_run()
    captum = timed_runs(captum_run, repeats, device)
    rows = [
        {
            "variant": "Captum fp32",
            "images_per_s": len(images) / captum["seconds"],
            "peak_mb": captum["peak_mb"],
            "speedup": 1.0,
        }
    ]
    if cuda:
        with _tf32():
            captum_run()
            tf32 = timed_runs(captum_run, repeats, device)
        rows.append(
            {
                "variant": "Captum, TF32 (torch's default for convolutions)",
                "images_per_s": len(images) / tf32["seconds"],
                "peak_mb": tf32["peak_mb"],
                "speedup": captum["seconds"] / tf32["seconds"],
                "agreement": agreement(tf32["result"], captum["result"]),
            }
        )
    for name, options in variants:
        options = dict(options)
        benchmark, compiled = options.pop("cudnn_benchmark", False), options.pop("compile", False)
        model = prepare_models(
            [original],
            {"fold_batchnorm": options.pop("fold_batchnorm", False), "channels_last": options.get("channels_last")},
        )[0]
        batch = args.internal_batch_size or auto_internal_batch_size(
            original, tuple(images.shape[1:]), device, autocast_dtype=options.get("autocast_dtype")
        )
        row = {"variant": name, "internal_batch_size": batch}
        if compiled:
            model = torch.compile(model)

        def run(model=model, options=options, batch=batch) -> torch.Tensor:
            return torch.cat(
                [
                    attribute_models(
                        "IntegratedGradients", [model], c, t, n_steps=args.n_steps, internal_batch_size=batch, **options
                    )[0]
                    for c, t in batches(images, targets, args.batch)
                ]
            )

        with _cudnn_benchmark(benchmark):
            fast = timed_variant(f"one model, {name}", run, repeats, device, row)
        if fast is None:
            rows.append(row)
            continue
        row.update(
            {
                "images_per_s": len(images) / fast["seconds"],
                "peak_mb": fast["peak_mb"],
                "speedup": captum["seconds"] / fast["seconds"],
                "agreement": agreement(fast["result"], captum["result"]),
            }
        )
        rows.append(row)
        print(
            f"   one model, {name}: {row['images_per_s']:.1f} img/s ({row['speedup']:.2f}x Captum fp32), "
            f"relative error {row['agreement']['relative_error']:.2e}",
            flush=True,
        )
    return rows


def bench_stacked(original, supports, images, targets, args, repeats, device, cuda: bool) -> list[dict]:
    """GAD-IG's K+1 maps: the models one after the other (the fast path) against all in one pass."""
    options = fast_options_for("IntegratedGradients", args, cuda)
    models = prepare_models([original, *supports], options)
    rows = args.internal_batch_size or auto_internal_batch_size(
        original, tuple(images.shape[1:]), device, autocast_dtype=options["autocast_dtype"]
    )
    sequential_options = {**options, "fold_batchnorm": False}

    def sequential(affine_stem: bool) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            return torch.cat(
                [
                    attribute_models(
                        "IntegratedGradients",
                        models,
                        c,
                        t,
                        n_steps=args.n_steps,
                        internal_batch_size=rows,
                        **{**sequential_options, "affine_stem": affine_stem},
                    )
                    for c, t in batches(images, targets, args.batch)
                ],
                dim=1,
            )

        return run

    def stacked(channels_last: bool) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            # `rows` model-rows per pass (K+1 models x images x steps): the memory of one model's pass
            return torch.cat(
                [
                    stacked_integrated_gradients(
                        models,
                        c,
                        t,
                        n_steps=args.n_steps,
                        rows_per_pass=rows,
                        autocast_dtype=options["autocast_dtype"],
                        channels_last=channels_last,
                    )
                    for c, t in batches(images, targets, args.batch)
                ],
                dim=1,
            )

        return run

    variants = [
        ("one after the other (fast path)", sequential(False)),
        ("one after the other + affine stem (GAD's setting)", sequential(options["affine_stem"])),
        ("stacked, vmap over K+1 models", stacked(False)),
    ]
    if options["channels_last"]:
        variants.append(("stacked, vmap over K+1 models, channels_last", stacked(True)))
    rows_out, reference = [], None
    for name, run in variants:
        row = {"variant": name, "models": len(models), "rows_per_model_pass": rows}
        timed = timed_variant(f"stacked models, {name}", run, repeats, device, row)
        if timed is None:
            rows_out.append(row)
            continue
        reference = timed["result"] if reference is None else reference
        row.update(
            {
                "images_per_s": len(images) / timed["seconds"],
                "peak_mb": timed["peak_mb"],
                "agreement_with_sequential": agreement(timed["result"].flatten(0, 1), reference.flatten(0, 1)),
            }
        )
        rows_out.append(row)
        print(f"   stacked models, {name}: {row['images_per_s']:.1f} img/s", flush=True)
    return rows_out


def gpu_goal(report: dict, args, cuda: bool) -> dict:
    goal = {
        "goal": "GAD-IG, K = 5, ResNet18 224 px, 50 steps: images/s >= Captum fp32 IG on one model",
        "applicable": bool(
            cuda and args.K == 5 and args.image_size == 224 and args.n_steps == 50 and args.architecture == "resnet18"
        ),
    }
    for row in report["attribution"]:
        if row["method"] == "IntegratedGradients" and cuda:
            goal["gad_over_captum_speed"] = row["gad_images_per_s"] / row["captum_images_per_s"]
            goal["met"] = goal["applicable"] and row["gad_images_per_s"] >= row["captum_images_per_s"]
    return goal


def bench_training(original, args, device, cuda: bool) -> dict:
    """One support model's training, as the pipeline trains it: MSE on 2 target logits, Adam, a 1-channel
    28 px ResNet18 (the default experiments' model), 2048 images per epoch on the CPU (4096 on CUDA),
    batch 128; images/s of the second of two epochs, for the plain Adam loop (``torch.optim.Adam``,
    the pipeline's optimiser before) and the fused Adam that gadlib now uses (``training.adam``)."""
    from gadlib.models import training
    from gadlib.models.architectures import build_model

    n = args.train_images or (4096 if cuda else 2048)
    batch = args.train_batch or 128
    generator = torch.Generator().manual_seed(args.seed + 100)
    images = torch.rand(n, 1, 28, 28, generator=generator).to(device)
    targets = torch.randn(n, 2, generator=generator).to(device)
    torch.manual_seed(args.seed)
    start_model = build_model("resnet18", 2, 1, 28, [0.28], [0.35]).to(device)
    common = {"loss": "mse", "batch_size": batch, "lr": 1e-4, "device": device, "progress": False}
    # bfloat16 autocast on CUDA around the whole call: the forward passes inside run in it
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    results = {"images": n, "batch_size": batch, "autocast_bf16": cuda}
    fused = training.adam
    for label, optimizer in (("plain_adam", lambda p, lr: torch.optim.Adam(p, lr=lr)), ("fused_adam", fused)):
        training.adam = optimizer  # train_model builds its optimiser with training.adam
        try:
            model = copy.deepcopy(start_model)
            with autocast:
                training.train_model(model, images, targets, epochs=1, seed=args.seed, **common)  # warm-up
            with peak_memory(device) as peak, autocast:
                start = _now(device)
                history = training.train_model(model, images, targets, epochs=1, seed=args.seed + 1, **common)
                seconds = _now(device) - start
        finally:
            training.adam = fused
        results[label] = {
            "seconds": seconds,
            "images_per_s": n / seconds,
            "final_mse": history.train_loss[-1],
            "peak_mb": peak["mb"],
        }
    results["images_per_s"] = results["fused_adam"]["images_per_s"]
    results["fused_over_plain"] = results["fused_adam"]["images_per_s"] / results["plain_adam"]["images_per_s"]
    return results


def bench_regions(args) -> dict:
    """Hull metrics with and without occlusion through bench/bench_regions.py's ``run``, if present."""
    path = Path(__file__).with_name("bench_regions.py")
    if not path.is_file():
        return {"skipped": "bench/bench_regions.py is missing"}
    spec = importlib.util.spec_from_file_location("bench_regions", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        run = module.run
    except (ImportError, AttributeError) as err:
        return {"skipped": f"bench/bench_regions.py could not be used: {err}"}
    n_maps = args.region_maps or 16
    results = {}
    for occlusion in (False, True):
        key = "with_occlusion" if occlusion else "without_occlusion"
        results[key] = run(args.image_size, n_maps, occlusion)
        print(f"   hull metrics {key.replace('_', ' ')}: {results[key]['maps_per_second']:.2f} maps/s", flush=True)
    return results


def batches(images: torch.Tensor, targets: torch.Tensor, size: int):
    for start in range(0, len(images), size):
        yield images[start : start + size], targets[start : start + size]


def timed_variant(
    label: str, run: Callable[[], torch.Tensor], repeats: int, device: torch.device, row: dict
) -> dict | None:
    """An experimental variant: a warm-up call (and compilation), then :func:`timed_runs`.

    Records ``first_call_seconds`` in ``row``; a failure is recorded there as ``error`` and printed,
    and gives ``None``: one variant must not sink the benchmark.
    """
    try:
        start = time.perf_counter()
        run()
        row["first_call_seconds"] = time.perf_counter() - start
        return timed_runs(run, repeats, device)
    except Exception as err:  # noqa: BLE001 - see above
        row["error"] = f"{type(err).__name__}: {err}"[:500]
        print(f"   {label}: failed ({row['error'][:200]})", flush=True)
        return None


def timed_runs(run: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> dict:
    """Best wall time of ``repeats`` calls, with the peak memory of the best one and its result."""
    best: dict | None = None
    for _ in range(repeats):
        with peak_memory(device) as peak:
            start = _now(device)
            result = run()
            seconds = _now(device) - start
        best = best_of(best, {"seconds": seconds, "peak_mb": peak["mb"], "result": result})
    return best


def best_of(a: dict | None, b: dict) -> dict:
    return b if a is None or b["seconds"] < a["seconds"] else a


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@contextlib.contextmanager
def peak_memory(device: torch.device):
    """Peak memory above the level at entry, in MiB: CUDA allocator peak, or sampled RSS on the CPU."""
    holder: dict[str, float | None] = {"mb": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield holder
        torch.cuda.synchronize(device)
        holder["mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    _release_freed_memory()
    base = _rss_bytes()
    if base is None:
        yield holder
        return
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            stop.wait(0.02)  # rarely: a busy sampler thread would slow the measured one

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield holder
    finally:
        stop.set()
        sampler.join()
        holder["mb"] = max(0, max(peak[0], _rss_bytes() or 0) - base) / 2**20


def _release_freed_memory() -> None:
    """Give memory that an earlier run freed back to the OS (glibc), so RSS starts from what is in use."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int | None:
    """Resident set size of this process (Linux /proc, else psutil, else None)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def agreement(ours: torch.Tensor, reference: torch.Tensor) -> dict:
    """Relative error ||a - b|| / ||b|| and the IoU of the top-10% pixel masks (what GAD thresholds)."""
    ours, reference = ours.float().cpu(), reference.float().cpu()
    mask_ours = binarize(pixel_importance(ours))
    mask_reference = binarize(pixel_importance(reference))
    union = (mask_ours | mask_reference).sum().item()
    return {
        "relative_error": float((ours - reference).norm() / reference.norm()),
        "top10_mask_iou": (mask_ours & mask_reference).sum().item() / union if union else float("nan"),
    }


def environment(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    try:
        import captum

        info["captum"] = captum.__version__
    except (ImportError, AttributeError):
        info["captum"] = None
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["tf32"] = "off (float32 Captum baseline)"
    else:
        info["device_name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
    if hasattr(os, "getloadavg"):  # other jobs on the machine make CPU timings noisy: keep the evidence
        info["load_average_at_start"] = list(os.getloadavg())
    return info


@contextlib.contextmanager
def _tf32():
    """TF32 on for convolutions and matmuls inside the block (torch's default for convolutions)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool):
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or saved
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _strict_fp32() -> None:
    """Switch TF32 off for convolutions and matmuls (legacy flags: every torch version has them)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def print_table(report: dict) -> None:
    """The results as plain-text tables, for the terminal and the log."""
    config, env = report["config"], report["environment"]
    print(
        f"\n{env['device_name']}, torch {env['torch']}, {config['architecture']} {config['image_size']}px, "
        f"{config['n_images']} images, batch {config['batch']}, K = {config['K']}, "
        f"IG steps {config['n_steps']}"
    )
    if "attribution" in report:
        header = (
            f"{'method':<20} {'Captum img/s':>12} {'GAD img/s':>10} {'GAD/Captum':>10} {'K+1':>4} "
            f"{'Captum MB':>9} {'GAD MB':>8} {'rel.err':>9} {'top10 IoU':>9}"
        )
        print(header)
        print("-" * len(header))
        for row in report["attribution"]:
            agree = row["agreement_original"]
            print(
                f"{row['method']:<20} {row['captum_images_per_s']:>12.1f} {row['gad_images_per_s']:>10.1f} "
                f"{row['gad_over_captum']:>10.2f} {row['k_plus_1']:>4d} {_mb(row['captum_peak_mb']):>9} "
                f"{_mb(row['gad_peak_mb']):>8} {agree['relative_error']:>9.1e} "
                f"{agree['top10_mask_iou']:>9.3f}"
            )
        print("(rel.err and top10 IoU: GAD's map of the original model against Captum's)")
        print(f"CPU goal (GAD/Captum <= K+1 for every method): {'met' if report['cpu_goal']['met'] else 'NOT met'}")
        goal = report["gpu_goal"]
        if "met" in goal:
            print(
                f"GPU goal ({goal['goal']}): {'met' if goal['met'] else 'NOT met'} (GAD/Captum speed "
                f"{goal['gad_over_captum_speed']:.2f}; configuration as in the goal: {goal['applicable']})"
            )
    if report.get("fast_path_one_model"):
        print(f"\nIG of one model{'':<46} {'img/s':>8} {'x Captum':>8} {'rel.err':>9} {'top10 IoU':>9}")
        for row in report["fast_path_one_model"]:
            if "error" in row:
                print(f"  {row['variant']:<58} failed: {row['error'][:60]}")
                continue
            agree = row.get("agreement", {"relative_error": 0.0, "top10_mask_iou": 1.0})
            print(
                f"  {row['variant']:<58} {row['images_per_s']:>8.1f} {row['speedup']:>8.2f} "
                f"{agree['relative_error']:>9.1e} {agree['top10_mask_iou']:>9.3f}"
            )
    if report.get("stacked_models"):
        print(
            f"\nGAD-IG, K+1 = {report['stacked_models'][0]['models']} models{'':<37} {'img/s':>8} "
            f"{'rel.err':>9} {'top10 IoU':>9}"
        )
        for row in report["stacked_models"]:
            if "error" in row:
                print(f"  {row['variant']:<58} failed: {row['error'][:60]}")
                continue
            agree = row["agreement_with_sequential"]
            print(
                f"  {row['variant']:<58} {row['images_per_s']:>8.1f} {agree['relative_error']:>9.1e} "
                f"{agree['top10_mask_iou']:>9.3f}"
            )
        print("(rel.err and top10 IoU: all K+1 maps against the first row's)")
    if "training" in report:
        training = report["training"]
        print(
            f"\none support model's training (MSE, batch {training['batch_size']}, bf16 {training['autocast_bf16']}): "
            f"plain Adam {training['plain_adam']['images_per_s']:.0f} img/s, fused Adam "
            f"{training['fused_adam']['images_per_s']:.0f} img/s ({training['fused_over_plain']:.2f}x)"
        )
    for key, value in report.get("regions", {}).items():
        if isinstance(value, dict):
            print(f"hull metrics {key.replace('_', ' ')}: {value['maps_per_second']:.2f} maps/s")
        else:
            print(f"hull metrics: {value}")


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
