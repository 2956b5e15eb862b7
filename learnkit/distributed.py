"""Helpers for runs over several processes (torch.distributed); no-ops in a single process."""

from __future__ import annotations

import os

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


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is True on any rank (a one-element all-reduce).

    Over NCCL the value goes through a CPU (gloo) side group when one was made by
    :func:`init_from_env`, so asking costs no wait on the GPU.
    """
    if not is_distributed():
        return bool(flag)
    group = _CPU_GROUP.get("group")
    device = torch.device("cpu")
    if group is None and dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    buf = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=group)
    return bool(buf.item() > 0)


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if is_distributed():
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank ``src``'s buffers (e.g. BatchNorm running statistics), in place."""
    if not is_distributed():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src)


_CPU_GROUP: dict = {}  # {"group": a gloo group beside an NCCL one}, made by init_from_env
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` (its environment variables are set)."""
    return all(k in os.environ for k in TORCHRUN_ENV)


def env_rank() -> int:
    """The rank ``torchrun`` gave this process (0 outside torchrun), readable before any init."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def env_world_size() -> int:
    """The processes ``torchrun`` started for this run (1 outside torchrun), readable before any init."""
    if not launched_by_torchrun():
        return 1
    try:
        return max(1, int(os.environ["WORLD_SIZE"]))
    except ValueError:
        return 1


def local_device(device: torch.device) -> torch.device:
    """The device this process uses: under torchrun a bare ``cuda`` means ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def init_from_env(device: torch.device) -> bool:
    """Join the process group ``torchrun`` describes in the environment, if any and not done yet.

    The backend is NCCL for CUDA devices, gloo otherwise; with NCCL a gloo side group is made too
    (for small host-side agreements such as :func:`any_rank`). Returns True when this call
    initialised the group (the caller then ends it with :func:`shutdown`).
    """
    if not launched_by_torchrun() or not dist.is_available() or dist.is_initialized():
        return False
    if int(os.environ["WORLD_SIZE"]) < 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    if backend == "nccl":
        _CPU_GROUP["group"] = dist.new_group(backend="gloo")
    return True


def shutdown(wait: bool = True) -> None:
    """Leave the process group; with ``wait``, after a barrier, so that no rank exits while rank 0
    still writes. A failed rank leaves without waiting (torchrun then stops the others)."""
    if dist.is_available() and dist.is_initialized():
        try:
            if wait:
                barrier()
        finally:
            _CPU_GROUP.clear()
            dist.destroy_process_group()
