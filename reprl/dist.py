"""torchrun set-up and rank helpers (torch.distributed; nothing home-made beyond glue).

Without torchrun (no WORLD_SIZE in the environment) every helper is a no-op, so the same
command runs single-process or data-parallel.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def world_size() -> int:
    """Number of processes (1 without torchrun)."""
    return tdist.get_world_size() if tdist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return tdist.get_rank() if tdist.is_initialized() else 0


def is_distributed() -> bool:
    """True under torchrun with more than one process."""
    return tdist.is_initialized() and tdist.get_world_size() > 1


def is_main() -> bool:
    """Rank 0 alone logs and writes checkpoints."""
    return rank() == 0


def init(device: str) -> torch.device:
    """Initialise the process group when launched by torchrun; return this rank's device.

    gloo on CPU, NCCL on GPU; each rank takes GPU ``LOCAL_RANK``.
    """
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if want_cuda else "gloo")
        if want_cuda:
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
    if device == "auto":
        return torch.device("cuda" if want_cuda else "cpu")
    return torch.device(device)


def all_reduce_grads(params: list[torch.Tensor]) -> None:
    """Average gradients over ranks with one all-reduce on a flat buffer (as DDP buckets do)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical start)."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        tdist.broadcast(t.data, src=0)


def mean_scalars(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over ranks (same keys on every rank)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return dict(zip(keys, (t / world_size()).tolist()))


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (keeps ranks stepping in lockstep,
    e.g. when rank 0's evaluation decides to stop)."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item())


def max_param_divergence(module: torch.nn.Module) -> float:
    """Largest absolute difference between this rank's parameters and rank 0's (0.0 when the
    data-parallel update kept every replica identical, as it must)."""
    if not is_distributed():
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])
    ref = flat.clone()
    tdist.broadcast(ref, src=0)
    diff = torch.tensor([(flat - ref).abs().max().item()], dtype=torch.float64)
    tdist.all_reduce(diff, op=tdist.ReduceOp.MAX)
    return float(diff.item())


def barrier() -> None:
    """Wait for every rank."""
    if is_distributed():
        tdist.barrier()


def cleanup() -> None:
    """Destroy the process group if one was made."""
    if tdist.is_initialized():
        tdist.destroy_process_group()
