"""Helpers for runs over several processes (torch.distributed); no-ops in a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True in the process that writes files and prints (rank 0, or the only one)."""
    return rank() == 0


def all_reduce_sum(total: torch.Tensor | float, count: int) -> tuple[torch.Tensor | float, int]:
    """Add ``total`` and ``count`` over every process; returned unchanged in a single process."""
    if not is_distributed():
        return total, count
    device = total.device if isinstance(total, torch.Tensor) else torch.device("cpu")
    if dist.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    buf = torch.stack(
        [
            torch.as_tensor(total, dtype=torch.float64, device=device).reshape(()),
            torch.tensor(float(count), dtype=torch.float64, device=device),
        ]
    )
    dist.all_reduce(buf)
    return buf[0], int(buf[1].item())
