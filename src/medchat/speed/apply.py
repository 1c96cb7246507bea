"""trainer.fused_lora / compile / micro_batch / activation_offloading -> what the builders do.

Two entry points, each called from one clearly delimited spot of medchat.training:
- `plan(cfg, liger)` (from sft_config): the micro-batch, accumulation, checkpointing and offloading plan
  when trainer.micro_batch=auto and trainer.gradient_checkpointing=auto on a GPU, else None (the config's
  own numbers and medchat.perf's checkpointing plan stand);
- `apply(trainer, cfg)` (from build_trainer): fuse the LoRA projections and compile the decoder layers.
"""

from __future__ import annotations

import functools
import logging

from medchat import perf
from medchat.config import ConfigError
from medchat.speed.microbatch import MicroBatchPlan, choose_micro_batch

log = logging.getLogger(__name__)
GIB = 2**30
SWITCHES = ("auto", "true", "false")


def _switch(cfg, key: str) -> str:
    value = str(getattr(cfg.trainer, key)).lower()
    if value not in SWITCHES:
        raise ConfigError(f"trainer.{key}={value!r} is not one of {', '.join(SWITCHES)}")
    return value


def use_fused_lora(cfg, cuda: bool) -> bool:
    """auto: on a CUDA GPU (on CPU PEFT's forward is as fast and the fused path gains nothing)."""
    value = _switch(cfg, "fused_lora")
    return value == "true" or (value == "auto" and cuda)


def use_compile(cfg, cuda: bool) -> bool:
    """auto: off until a measurement shows regional compilation pays with bitsandbytes layers (bench/RESULTS.md)."""
    value = _switch(cfg, "compile")
    return value == "true"


def offload_choice(cfg) -> str:
    return _switch(cfg, "activation_offloading")


def estimate_fn(cfg, arch: perf.Arch, liger: bool, attention: str, fused: bool):
    """estimate(tokens, checkpointed_layers, offload) -> bytes: medchat.perf's memory model, with the fused LoRA
    keeping no dropout copies and offloading moving the checkpointed layers' inputs to host memory."""
    from medchat.training import lora_targets_for_estimate

    base = functools.partial(
        perf.estimate_peak_bytes, arch, quant_mode=cfg.quant.mode, lora_r=cfg.lora.r,
        lora_targets=lora_targets_for_estimate(cfg.lora), lora_dropout=0.0 if fused else cfg.lora.lora_dropout,
        liger=liger, attention=attention, sequence=cfg.trainer.max_length)

    def estimate(tokens: int, checkpointed: int, offload: bool) -> int:
        need = base(tokens=tokens, checkpointed_layers=checkpointed)
        if offload:
            # TRL's offloading moves the checkpointed inputs (and part of the recompute) to host memory.
            # Calibrated on one H200 (bench/results/h200_call{1,2}_*.json, Mistral-7B, all layers
            # checkpointed): measured 5.53 GiB at 1,024 tokens and 6.21 at 4,096, where this model without the
            # last line said 6.06 and 6.53: 0.60 GiB less, 71 KiB per token more.
            need -= tokens * checkpointed * 2 * arch.hidden
            need += (tokens * 71 * 1024 - int(0.60 * GIB)) * checkpointed // max(arch.layers, 1)
        return need

    return estimate


def plan(cfg, liger: bool) -> MicroBatchPlan | None:
    """The auto micro-batch plan (see medchat.speed.microbatch), or None where it does not apply."""
    from medchat.modeling import has_cuda, local_rank

    t = cfg.trainer
    value = str(t.micro_batch).lower()
    if value not in ("auto", "fixed"):
        raise ConfigError(f"trainer.micro_batch={value!r} is not one of auto, fixed")
    if (value != "auto" or not has_cuda() or perf.fsdp_enabled()
            or perf.normalize_checkpointing(t.gradient_checkpointing) != "auto"):
        return None
    from transformers import AutoConfig

    from medchat.modeling import attn_implementation, model_path

    path = model_path(cfg.model)
    config = AutoConfig.from_pretrained(path, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code)
    arch = perf.Arch.from_config(config)
    estimate = estimate_fn(cfg, arch, liger, attn_implementation(cfg.model, path), use_fused_lora(cfg, True))
    result = choose_micro_batch(
        rows_per_step=t.per_device_train_batch_size * t.gradient_accumulation_steps,
        configured_batch=t.per_device_train_batch_size, max_length=t.max_length, layers=arch.layers,
        budget_bytes=perf.memory_budget_bytes(t.memory_budget_gib, local_rank()), estimate=estimate)
    if offload_choice(cfg) == "false" and result.offload:
        result = MicroBatchPlan(result.per_device_train_batch_size, result.gradient_accumulation_steps,
                                result.checkpointed_layers, False, result.estimate_bytes, False,
                                result.reason + " (offloading wanted but trainer.activation_offloading=false)")
    if not result.fits:
        log.warning("micro-batch plan: %s: the step will likely run out of memory", result.reason)
    log.info("micro-batch plan: %s", result.reason)
    return result


def sft_overrides(mb: MicroBatchPlan, layers_every: int | None = None) -> dict:
    """SFTConfig keyword arguments for a plan."""
    return {"per_device_train_batch_size": mb.per_device_train_batch_size,
            "gradient_accumulation_steps": mb.gradient_accumulation_steps,
            "activation_offloading": mb.offload}


def apply(trainer, cfg) -> dict:
    """Fuse and compile the trainer's model in place; returns what was done (for metrics and the bench)."""
    from medchat.modeling import has_cuda
    from medchat.speed.compile import compile_layers
    from medchat.speed.fused_lora import fuse_lora

    done = {"fused_lora_projections": 0, "compiled_layers": 0}
    if use_fused_lora(cfg, has_cuda()):
        done["fused_lora_projections"] = fuse_lora(trainer.model)
    if use_compile(cfg, has_cuda()):
        done["compiled_layers"] = compile_layers(trainer.model)
    return done
