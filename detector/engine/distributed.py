"""torch.distributed helpers (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK); single-process when not set."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..config import ConfigError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_environment(device: str = "auto") -> torch.device:
    """Join the process group torchrun describes (nccl on GPU, gloo on CPU); pick this process's device."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device}, but this machine has no CUDA GPU; use train.device=auto or cpu")
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_distributed():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu" if device == "auto" else device)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: object) -> list:
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: float, device: torch.device) -> float:
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world_size()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
