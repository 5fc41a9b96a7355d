"""Data-parallel training of a classifier or a support model over several GPUs (or CPU processes).

Start one process per device with ``torchrun``; each process calls :func:`train_distributed`, which
wraps the model in ``DistributedDataParallel`` and gives each process its shard of every epoch
through a ``DistributedSampler``. The epoch loop itself is :mod:`gadlib.training`'s, run on the shard.
The command line trains one model from an ``.npz`` of images and targets:

    torchrun --nproc_per_node=4 -m gadlib.distributed --data train.npz --out support_1.pt \\
        --architecture resnet18 --image-size 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \\
        --init classifier.pt --loss mse --epochs 10 --batch-size 128 --lr 1e-4 --seed 0

Semantics, against single-process :func:`gadlib.training.train_model` with the same arguments:
``batch_size`` is the global batch (each of W processes takes ``batch_size / W`` images), DDP
averages the gradients, so one step is the step of the global batch; batch norm normalises each
process's share (no SyncBatchNorm), and ``DistributedSampler`` pads the last epoch shard by repeating
a few images so every process runs the same number of steps. Rank 0 writes the checkpoint.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

from gadlib import training
from gadlib.atomic import load_arrays
from gadlib.checkpoints import load_checkpoint, save_checkpoint
from gadlib.progress import tqdm


def is_distributed_launch() -> bool:
    """Whether this process was started by ``torchrun`` (or a process group already exists)."""
    return (dist.is_available() and dist.is_initialized()) or "WORLD_SIZE" in os.environ


def train_distributed(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    autocast_bf16: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_meta: dict | None = None,
    backend: str | None = None,
    progress: bool = False,
) -> training.TrainHistory:
    """Train ``model`` in place with Adam, data-parallel over the processes ``torchrun`` started.

    Every process calls this with the same model weights, data and arguments. Without ``torchrun``
    (no ``WORLD_SIZE`` in the environment) it is :func:`gadlib.training.train_model` on one device.

    Parameters
    ----------
    model : maps (B, C, H, W) images to (B, K) outputs; moved to this process's device
        (``cuda:LOCAL_RANK``, or the CPU without CUDA) and left there, in training mode.
    images : (N, C, H, W) float tensor, the whole training set (each process reads its shard).
    targets : (N,) int64 classes for ``"cross_entropy"``; (N, K) float target logits for ``"mse"``.
    loss, epochs, lr, seed, autocast_bf16, progress : as in :func:`gadlib.training.train_model`.
    batch_size : global batch size; must be divisible by the number of processes.
    checkpoint_path : if given, rank 0 writes the weights there atomically after every epoch
        (:func:`gadlib.checkpoints.save_checkpoint`), with the history and ``checkpoint_meta`` in meta.
    backend : process-group backend; ``None`` = ``"nccl"`` with CUDA, ``"gloo"`` otherwise.

    Returns
    -------
    TrainHistory with the mean training loss over all processes of each epoch (identical on every rank).
    """
    if not is_distributed_launch():
        history = training.train_model(model, images, targets, loss=loss, epochs=epochs,
                                       batch_size=batch_size, lr=lr, seed=seed,
                                       autocast_bf16=autocast_bf16, progress=progress)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, _meta(history, 1, checkpoint_meta))
        return history

    training.check_training_inputs(model, images, targets, loss=loss, epochs=epochs, batch_size=batch_size,
                                   lr=lr)
    created_group = not dist.is_initialized()
    if created_group:
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is the global batch and must be divisible by the "
                             f"{world_size} processes; use a multiple of {world_size}")
        device = _process_device()
        use_bf16 = autocast_bf16 and device.type == "cuda"
        if loss == "mse":
            targets = targets.float()
        model.to(device)
        # DDP broadcasts rank 0's weights and buffers, so every process starts from the same model.
        device_ids = [device.index] if device.type == "cuda" else None
        ddp_model = DistributedDataParallel(model, device_ids=device_ids)
        optimizer = torch.optim.Adam(ddp_model.parameters(), lr=lr)
        sampler = DistributedSampler(TensorDataset(images), num_replicas=world_size, rank=rank,
                                     shuffle=True, seed=seed, drop_last=False)
        history = training.TrainHistory()
        epoch_bar = tqdm(range(epochs), desc=f"train ({loss}, {world_size} processes)",
                         disable=not progress or rank != 0, leave=False)
        for epoch in epoch_bar:
            sampler.set_epoch(epoch)
            shard = torch.tensor(list(iter(sampler)), dtype=torch.int64)
            shard_loss = training.train_epoch(ddp_model, images[shard], targets[shard], optimizer, loss=loss,
                                              batch_size=batch_size // world_size, seed=seed, epoch=epoch,
                                              device=device, autocast_bf16=use_bf16,
                                              dropout_seed_offset=rank)  # other dropout masks on each rank
            mean_loss = torch.tensor([shard_loss], dtype=torch.float64, device=device)
            dist.all_reduce(mean_loss)  # equal shards: the mean of the means is the mean
            history.train_loss.append(float(mean_loss) / world_size)
            # DDP syncs buffers (batch-norm statistics) only before a forward pass: after the epoch's
            # last step each process holds its own, so take rank 0's, as the next forward would.
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
            history.best_epoch = epoch + 1
            epoch_bar.set_postfix(train_loss=f"{history.train_loss[-1]:.4g}")
            if checkpoint_path is not None and rank == 0:
                save_checkpoint(checkpoint_path, model, _meta(history, world_size, checkpoint_meta))
        dist.barrier()  # the checkpoint exists when any process returns
        return history
    finally:
        if created_group:
            dist.destroy_process_group()


def _process_device() -> torch.device:
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def _meta(history: training.TrainHistory, world_size: int, extra: dict | None) -> dict:
    return {**(extra or {}), "history": asdict(history), "world_size": world_size}


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: train one model data-parallel (run under ``torchrun``); rank 0 writes ``--out``."""
    parser = argparse.ArgumentParser(description="Data-parallel training of a gadlib model (under torchrun).")
    parser.add_argument("--data", required=True, type=Path,
                        help=".npz with 'images' (N, C, H, W) float in [0, 1] and 'targets' ((N,) int64 "
                             "classes, or (N, K) float target logits for --loss mse)")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write (rank 0, atomically)")
    parser.add_argument("--architecture", default="resnet18")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="outputs of the model (default: K of mse targets, or max class + 1)")
    parser.add_argument("--image-size", type=int, default=None, help="default: the images' width")
    parser.add_argument("--mean", default=None, help="comma-separated per-channel mean (default 0.5 each)")
    parser.add_argument("--std", default=None, help="comma-separated per-channel std (default 0.25 each)")
    parser.add_argument("--init", type=Path, default=None,
                        help="checkpoint to start from (e.g. the classifier, or the previous support model)")
    parser.add_argument("--loss", choices=training.LOSSES, default="mse")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on CUDA")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    from gadlib.models import build_model  # only the command line builds models

    arrays = load_arrays(args.data)
    missing = {"images", "targets"} - set(arrays)
    if missing:
        raise ValueError(f"{args.data} lacks the arrays {sorted(missing)}; it needs 'images' and 'targets'")
    images = torch.from_numpy(arrays["images"]).float()
    targets = torch.from_numpy(arrays["targets"])
    if images.dim() != 4:
        raise ValueError(f"'images' in {args.data} must have shape (N, C, H, W); got {tuple(images.shape)}")
    in_channels = images.shape[1]
    num_classes = args.num_classes or (targets.shape[1] if targets.dim() == 2 else int(targets.max()) + 1)
    mean = _floats(args.mean, in_channels, 0.5, "--mean")
    std = _floats(args.std, in_channels, 0.25, "--std")
    torch.manual_seed(args.seed)  # the same initial weights in every process (DDP broadcasts them anyway)
    model = build_model(args.architecture, num_classes, in_channels, args.image_size or images.shape[-1],
                        mean, std)
    if args.init is not None:
        load_checkpoint(args.init, model, created_by="the run that trained the initial model")
    history = train_distributed(model, images, targets, loss=args.loss, epochs=args.epochs,
                                batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                autocast_bf16=args.bf16, checkpoint_path=args.out, progress=args.progress,
                                checkpoint_meta={"architecture": args.architecture, "loss": args.loss,
                                                 "epochs": args.epochs, "batch_size": args.batch_size,
                                                 "lr": args.lr, "seed": args.seed, "mean": mean, "std": std,
                                                 "init": None if args.init is None else str(args.init)})
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"trained {args.architecture} for {args.epochs} epochs; loss {history.train_loss[0]:.4g} -> "
              f"{history.train_loss[-1]:.4g}; weights in {args.out}")


def _floats(text: str | None, count: int, default: float, name: str) -> list[float]:
    if text is None:
        return [default] * count
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as err:
        raise ValueError(f"{name} must be comma-separated numbers; got {text!r}") from err
    if len(values) != count:
        raise ValueError(f"{name} needs {count} values (one per channel); got {text!r}")
    return values


if __name__ == "__main__":
    main()
