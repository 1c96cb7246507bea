"""What this machine (and this process's launch) is: the one place medchat asks torch and the environment.

Every hardware-dependent choice (dtype, precision, attention, Liger, optimizer, placement, checkpointing)
is made in medchat.plan from a `Hardware` value, never from `torch.cuda` directly, so a test can hand the
planner a GPU-shaped machine on a CPU box: `Hardware(cuda=True, gpus=1, bf16=True, ...)`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


@dataclass(frozen=True)
class Hardware:
    cuda: bool = False
    gpus: int = 0  # visible CUDA devices
    bf16: bool = False  # the GPU supports bf16
    gpu_memory_bytes: int | None = None  # of this process's GPU
    mps: bool = False  # Apple GPU (bitsandbytes does not run there)
    flash_attn: bool = False  # the flash_attn package is importable
    flex_attention: bool = True  # torch.nn.attention.flex_attention exists
    liger: bool = False  # liger_kernel is importable
    bitsandbytes: bool = True
    world_size: int = 1  # training processes in the launch (WORLD_SIZE)
    local_world_size: int = 1  # of them on this machine (LOCAL_WORLD_SIZE)
    local_rank: int = 0  # this process's index on this machine (LOCAL_RANK)
    fsdp: bool = False  # `accelerate launch` with an FSDP config (ACCELERATE_USE_FSDP)

    def to_dict(self) -> dict:
        return asdict(self)


def detect() -> Hardware:
    """This machine as torch and the launcher's environment variables describe it."""
    import torch

    cuda = torch.cuda.is_available()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpus = torch.cuda.device_count() if cuda else 0
    memory = None
    if cuda and local_rank < gpus:
        memory = torch.cuda.get_device_properties(local_rank).total_memory
    return Hardware(
        cuda=cuda,
        gpus=gpus,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        gpu_memory_bytes=memory,
        mps=torch.backends.mps.is_available(),
        flash_attn=_installed("flash_attn"),
        flex_attention=_installed("torch.nn.attention.flex_attention"),
        liger=_installed("liger_kernel"),
        bitsandbytes=_installed("bitsandbytes"),
        world_size=world,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
        local_rank=local_rank,
        fsdp=os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true"),
    )
