"""gadlib.distributed: two CPU processes (gloo) end with identical weights and a lower loss."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from gadlib.atomic import save_arrays
from gadlib.checkpoints import load_checkpoint
from gadlib.distributed import is_distributed_launch, train_distributed
from gadlib.paths import ROOT

N_IMAGES, SIZE = 64, 8


def tiny_model() -> nn.Module:
    """Convolution, batch norm (buffers DDP must broadcast) and a linear head with 2 outputs."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2))


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose mean brightness sets the target logits, so a small model can learn them."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(N_IMAGES, 1, SIZE, SIZE, generator=generator)
    brightness = images.mean(dim=(1, 2, 3))
    targets = torch.stack([4 * brightness - 2, 2 - 4 * brightness], dim=1)
    return images, targets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different initial weights on purpose: DDP must broadcast rank 0's
    model = tiny_model()
    images, targets = regression_data()
    history = train_distributed(model, images, targets, loss="mse", epochs=6, batch_size=16, lr=0.03,
                                seed=0, checkpoint_path=os.path.join(out_dir, "model.pt"))
    torch.save({"state_dict": model.state_dict(), "loss": history.train_loss},
               os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_end_with_identical_weights_and_lower_loss(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), name
    assert ranks[0]["loss"] == ranks[1]["loss"]  # the all-reduced mean over both shards
    assert ranks[0]["loss"][-1] < 0.5 * ranks[0]["loss"][0]
    # rank 0's checkpoint holds the final weights and the history
    state_dict, meta = load_checkpoint(tmp_path / "model.pt")
    assert all(torch.equal(v, ranks[0]["state_dict"][k]) for k, v in state_dict.items())
    assert meta["world_size"] == 2 and meta["history"]["train_loss"] == ranks[0]["loss"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_torchrun_command_line(tmp_path):
    images, targets = regression_data()
    save_arrays(tmp_path / "train.npz", images=images.repeat(1, 3, 4, 4).numpy(),
                targets=targets.numpy().astype(np.float32))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               "-m", "gadlib.distributed", "--data", str(tmp_path / "train.npz"),
               "--out", str(tmp_path / "support.pt"), "--architecture", "small_cnn", "--loss", "mse",
               "--epochs", "4", "--batch-size", "16", "--lr", "0.01", "--seed", "0"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    _, meta = load_checkpoint(tmp_path / "support.pt")
    losses = meta["history"]["train_loss"]
    assert meta["world_size"] == 2 and len(losses) == 4 and losses[-1] < losses[0]
    assert "weights in" in result.stdout


def test_without_torchrun_it_trains_in_this_process(tmp_path, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not is_distributed_launch()
    torch.manual_seed(0)
    model = tiny_model()
    images, targets = regression_data()
    history = train_distributed(model, images, targets, loss="mse", epochs=3, batch_size=16, lr=0.03, seed=0,
                                checkpoint_path=tmp_path / "model.pt")
    assert len(history.train_loss) == 3 and history.train_loss[-1] < history.train_loss[0]
    _, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["world_size"] == 1

