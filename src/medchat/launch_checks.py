"""Checks that refuse a launch before anything is loaded.

Each takes the machine as a `medchat.hardware.Hardware` value, so a CPU test can ask what a GPU machine
(or a two-process launch on one GPU) would be told.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from medchat.config import ConfigError
from medchat.hardware import Hardware


def check_processes_vs_gpus(hw: Hardware) -> None:
    """More processes on a machine than visible GPUs makes two ranks share a GPU (NCCL refuses or hangs):
    refuse before anything is loaded."""
    if not hw.cuda:
        return
    gpus = hw.gpus
    if hw.world_size == 1 and gpus > 1:
        # One process would see several GPUs: Trainer would wrap the model in nn.DataParallel, which TRL refuses
        # only after the model has loaded.
        raise ConfigError(
            f"{gpus} GPUs are visible to a single training process. Train on all of them with one process per GPU: "
            f"accelerate launch --config_file conf/accelerate/ddp.yaml --num_processes {gpus} train.py ...; "
            "or on one GPU: CUDA_VISIBLE_DEVICES=0 python train.py ..."
        )
    if hw.local_world_size > gpus or hw.local_rank >= gpus:
        raise ConfigError(
            f"{hw.local_world_size} training processes on this machine but {gpus} visible GPU(s): each process needs "
            f"its own GPU. Launch with --num_processes {gpus} (accelerate) or --nproc_per_node {gpus} (torchrun), or "
            "make more GPUs visible with CUDA_VISIBLE_DEVICES"
        )


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or transformers' TRANSFORMERS_OFFLINE) set: nothing is fetched from the Hub."""
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def unreachable_model_message(name: str, why: str) -> str:
    from huggingface_hub import constants

    home = os.environ.get("HF_HOME") or f"unset, so {constants.HF_HOME}"
    return (f"model.name_or_path={name} is not a local directory and not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}; HF_HOME={home}), and the Hub cannot be reached ({why}). Use a local copy: "
            f"model.name_or_path=DIR, a directory with its config.json, tokenizer and weights (e.g. made with "
            f"`hf download {name} --local-dir DIR` where the Hub is reachable), or set HF_HOME to the cache that "
            "holds it")


def check_model_reachable(name_or_path: str, revision: str | None = None, probe_hub: bool = False) -> None:
    """Refuse, before any job starts or weight loads, a model that is neither a local directory nor in the local
    Hugging Face cache while the Hub is switched off (HF_HUB_OFFLINE): file lookups only. With `probe_hub` (the
    sweep launcher, before its first job), a model that is not cached is also refused when the Hub does not
    answer one HEAD request for its config.json. Without it, a Hub that does not answer is reported by
    medchat.plan.resolve's own config lookup, with the same way out."""
    from medchat.pretrained import is_packaged

    name = str(name_or_path)
    if name == "tiny" or is_packaged(name) or Path(name).expanduser().is_dir():
        return
    if name.startswith(("/", "./", "../", "~")):
        raise ConfigError(f"model.name_or_path={name}: no such directory")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - not a valid repo id either: nothing of it can be cached
        cached = None
    if isinstance(cached, str):
        return
    if hub_offline():
        raise ConfigError(unreachable_model_message(name, "HF_HUB_OFFLINE is set"))
    why = _hub_unreachable(name, revision) if probe_hub else None
    if why:
        raise ConfigError(unreachable_model_message(name, why))


@functools.lru_cache(maxsize=None)
def _hub_unreachable(name: str, revision: str | None) -> str | None:
    """Why the Hub did not answer a HEAD request for the model's config.json; None when it answered (a missing or
    gated repo too: the job's own error says which)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json", revision=revision), timeout=10)
    except Exception as e:  # noqa: BLE001 - only transport failures count, by name (requests, httpx)
        kinds = {c.__name__ for c in type(e).__mro__}
        if kinds & {"ConnectError", "NetworkError", "TransportError", "TimeoutException", "ConnectionError",
                    "Timeout", "ProxyError"}:
            return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no answer'}"
    return None


def is_unreachable(error: OSError) -> bool:
    """transformers' OSError for a Hub that cannot be reached (no network, a proxy, offline mode)."""
    text = str(error)
    return "couldn't connect" in text or "offline mode" in text or "Connection" in type(error.__cause__).__name__


def check_fsdp_quantization(quant_cfg, model_dtype: str, fsdp: bool) -> None:
    """FSDP shards only floating-point tensors of one dtype per wrapped unit: 4-bit weights must be stored
    as the model's dtype (bnb_4bit_quant_storage), and 8-bit weights cannot be sharded at all."""
    if not fsdp or quant_cfg.mode == "none":
        return
    if quant_cfg.mode == "int8":
        raise ConfigError("FSDP cannot shard bitsandbytes 8-bit weights (int8 storage): use quant=nf4 with "
                          "quant.quant_storage=bfloat16, or DDP (conf/accelerate/ddp.yaml) if the model fits one GPU")
    if quant_cfg.quant_storage is not None and quant_cfg.quant_storage != model_dtype:
        raise ConfigError(
            f"FSDP with quant.mode={quant_cfg.mode}: quant.quant_storage={quant_cfg.quant_storage} must equal the "
            f"model's dtype ({model_dtype}) so that FSDP can flatten 4-bit and regular weights together; "
            f"set quant.quant_storage={model_dtype} (or leave it null: medchat then sets it under FSDP)"
        )


def check_quantization(quant_cfg, hw: Hardware) -> None:
    """bitsandbytes is installed and runs here, and the compute dtype is one this GPU has."""
    if quant_cfg.mode == "none":
        return
    if not hw.bitsandbytes:
        raise ConfigError(f"quant.mode={quant_cfg.mode} needs bitsandbytes, which is not installed; use quant=none")
    if hw.mps and not hw.cuda:
        raise ConfigError(f"quant.mode={quant_cfg.mode}: bitsandbytes does not run on Apple MPS; use quant=none")
    if quant_cfg.compute_dtype == "bfloat16" and hw.cuda and not hw.bf16:
        raise ConfigError("quant.compute_dtype=bfloat16: this GPU has no bf16 support; use auto or float16")
