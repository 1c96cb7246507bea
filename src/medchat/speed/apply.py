"""trainer.fused_lora / compile / micro_batch / activation_offloading: the choices and the builder step.

The choices are pure functions of the config's sections (trainer.*, lora.*, quant.mode) and a
medchat.hardware.Hardware, called once by
medchat.plan.resolve (so a GPU-shaped Hardware in a CPU test gets the GPU answers); their results are fields
of the RunPlan:
- `use_fused_lora`, `compile_choice`: the two switches;
- `micro_batch_plan`: the micro-batch, accumulation, checkpointing and offloading plan when
  trainer.micro_batch=auto and trainer.gradient_checkpointing=auto on a GPU with a known memory budget, else
  None (the config's own numbers and medchat.memory's checkpointing plan stand);
- `apply(trainer, plan)` (from training.build_trainer): fuse the LoRA projections and compile the decoder
  layers as the plan says. It decides nothing.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import replace

from medchat import memory
from medchat.hardware import Hardware
from medchat.speed.microbatch import MicroBatchPlan, choose_micro_batch, divisors_desc

log = logging.getLogger(__name__)
GIB = 2**30


def _switch(trainer_cfg, key: str) -> str:
    """trainer.<key> as auto | true | false (YAML booleans arrive as True/False; medchat.config_checks.validate
    has checked the value against medchat.config.CHOICES)."""
    return str(getattr(trainer_cfg, key)).lower()


def use_fused_lora(trainer_cfg, quant_mode: str, hw: Hardware, precision: str = "bf16") -> bool:
    """auto: on a CUDA GPU under bf16 mixed precision (on CPU PEFT's forward is as fast and the fused path gains
    nothing). Only bf16 was proven equal to PEFT's forward on a GPU (bench/RESULTS.md, issue 19: worst adapter
    gradient cosine 0.99987 on the 7B shape); in the fp32 run it was 0.9926, below that run's own floor of exact
    reorderings (0.9982) and not explained, so fp32 and fp16 runs get PEFT's forward unless asked for.

    Never under FSDP (it re-wraps the 4-bit weights, whose quant_state bitsandbytes restores only on its own
    forward path) nor for quant=int8 (bitsandbytes' int8 layers are not plain matmuls): PEFT's forward serves
    those, also with trainer.fused_lora=true, with a warning."""
    value = _switch(trainer_cfg, "fused_lora")
    wanted = value == "true" or (value == "auto" and hw.cuda and precision == "bf16")
    unserved = "FSDP" if hw.fsdp else ("quant=int8" if quant_mode == "int8" else None)
    if wanted and unserved:
        if value == "true":
            log.warning("trainer.fused_lora=true: not under %s; PEFT's own LoRA forward is used", unserved)
        return False
    return wanted


# Where trainer.compile=auto compiles: what the GPU record measured (bench/RESULTS.md, issue 23). Compiled on one
# fixed shape with eager's roundings (medchat.speed.compile.EAGER_ROUNDING), the Mistral-7B step ran 13,301 tokens/s
# against the eager step's 8,164 in the same call (1.63x, one H100, call 14), and its gradients passed the GPU
# equivalence floor at dropout 0 (worst cosine 0.99215 against the floor's limit 0.98757, one H200, call 13) and its
# loss trajectory the dropout-0.05 noise floor (max difference 2.8e-3 against the floor's 5.2e-3, call 14). Measured:
# one process, bf16 with fused LoRA over NF4 weights, flex_attention, no Liger, Mistral's decoder layer, micro-batches
# of 4,096 tokens (and 8,192: 1.51x eager with Inductor's rounding, call 11), no checkpointing or offloading, torch
# 2.11 on H100 and H200; anything else stays eager under auto (trainer.compile=true compiles it anyway). The GPU
# model and the torch version are not checked.
COMPILE_MEASURED_MODEL_TYPES = ("mistral",)
COMPILE_MEASURED_MAX_TOKENS = 8192
# Compiled, the step keeps more activations than eager: measured 36.28 GiB at 4 x 1,024 tokens and 67.07 at
# 4 x 2,048 where medchat.memory estimates 28.53 and 51.15 with 5.91 of it weights, adapters and buffers, i.e.
# 1.34x and 1.35x the estimated activations (calls 14 and 11); at the compiled splits 21.21 GiB (2 x 1,024) and
# 36.62 (2 x 2,048) against 21.7 and 37.6 planned (call 18). Auto compiles only where this fits the budget.
COMPILED_ACTIVATIONS = 1.4


# The compiled step split into smaller micro-batches, where the configured one's compiled activations do not fit.
# Measured in one call (one H100, Mistral-7B shape, bench/RESULTS.md issue 23, call 18): under a 23 GiB budget,
# 2 x 1,024 tokens with accumulation 2 compiled ran 9,733 tokens/s at 21.21 GiB, the eager plan for that budget
# (4 x 1,024, 11 of 32 layers checkpointed) 7,494 (1.30x) and the eager step unsplit 8,586 (1.13x); at 4 x 2,048
# tokens, 2 x 2,048 x 2 compiled 13,475 against the eager 4 x 2,048's 9,779 (1.38x). Smaller compiled micro-batches
# than 2,048 tokens were not measured: auto leaves those eager.
COMPILE_MEASURED_MIN_TOKENS = 2048


def compile_choice(trainer_cfg, hw: Hardware, *, model_type: str | None, quant_mode: str, precision: str,
                   fused: bool, attention: str, liger: bool, mb: MicroBatchPlan | None,
                   estimate=None, stage: str = "sft") -> tuple[bool, MicroBatchPlan | None, str]:
    """trainer.compile -> (compile the decoder layers?, the micro-batch plan to run, why).

    auto: on only where the GPU record measured it faster and equivalent (COMPILE_MEASURED_MODEL_TYPES above) and
    its larger activations (COMPILED_ACTIVATIONS) fit the memory budget: at the micro-batch plan's split, else at
    the largest smaller split of at least COMPILE_MEASURED_MIN_TOKENS a micro-batch with nothing checkpointed or
    offloaded (the same rows per optimizer step: measured faster than the eager plans it replaces). `estimate` is
    the plan's memory model (estimate_fn). The micro-batch plan returned carries the compiled step's estimate
    wherever the compiled memory was measured; otherwise it is `mb` unchanged."""
    value = _switch(trainer_cfg, "compile")
    if value == "false":
        return False, mb, "trainer.compile=false"
    if value == "true":  # as asked; the plan's estimate is the compiled step's where its memory was measured
        need = _compiled_bytes(mb, estimate)
        if need is None:
            return True, mb, "trainer.compile=true"
        budget = memory.memory_budget_bytes(trainer_cfg.memory_budget_gib, hw.gpu_memory_bytes)
        if budget is not None and need > budget:
            log.warning("trainer.compile=true: the compiled step is estimated at %.1f GiB, over the %.1f GiB budget",
                        need / GIB, budget / GIB)
        return True, _with_estimate(mb, need), f"trainer.compile=true; compiled estimate {need / GIB:.1f} GiB"
    off = None
    if stage != "sft":
        off = f"SFT-only (stage {stage})"
    elif not hw.cuda:
        off = "no CUDA GPU"
    elif hw.world_size > 1 or hw.fsdp:
        off = "measured in one process only"
    elif precision != "bf16" or not fused or quant_mode != "nf4":
        off = "measured with fused LoRA over NF4 weights under bf16 only"
    elif attention != "flex_attention" or liger:
        off = "measured with flex_attention and without Liger only"
    elif model_type not in COMPILE_MEASURED_MODEL_TYPES:
        off = f"measured on {', '.join(COMPILE_MEASURED_MODEL_TYPES)} decoder layers only, not {model_type}"
    elif mb is None or estimate is None:
        off = ("its memory is planned only by the auto micro-batch plan (trainer.micro_batch=auto and "
               "gradient_checkpointing=auto with a known memory budget)")
    elif mb.per_device_train_batch_size * int(trainer_cfg.max_length) > COMPILE_MEASURED_MAX_TOKENS:
        off = f"measured on micro-batches of up to {COMPILE_MEASURED_MAX_TOKENS:,} tokens only"
    if off is not None:
        return False, mb, f"auto: off: {off}"
    budget = memory.memory_budget_bytes(trainer_cfg.memory_budget_gib, hw.gpu_memory_bytes)
    need = _compiled_bytes(mb, estimate)
    if need is not None and need <= budget:
        return True, _with_estimate(mb, need), (
            f"auto: on: measured 1.63x the eager step and within the GPU equivalence floors on the Mistral-7B NF4 "
            f"shape (one H100, bench/RESULTS.md, issue 23); compiled estimate {need / GIB:.1f} GiB, budget "
            f"{budget / GIB:.1f} GiB")
    split = _compiled_split(trainer_cfg, mb, estimate, budget)
    if split is not None:
        return True, split, (
            f"auto: on, split: the eager plan ({mb.reason}) replaced by {split.reason}, since the compiled step at "
            f"2 x 1,024 tokens measured 1.30x the eager 23 GiB plan (one H100, bench/RESULTS.md, issue 23)")
    why = ("the micro-batch plan checkpoints or offloads and no compiled split of at least "
           f"{COMPILE_MEASURED_MIN_TOKENS:,} tokens fits" if need is None
           else f"compiled estimate {need / GIB:.1f} GiB, budget {budget / GIB:.1f} GiB, and no compiled split of "
                f"at least {COMPILE_MEASURED_MIN_TOKENS:,} tokens fits")
    return False, mb, f"auto: off: {why}"


def _with_estimate(mb: MicroBatchPlan | None, need: int) -> MicroBatchPlan | None:
    if mb is None:
        return None
    return replace(mb, estimate_bytes=need, reason=f"{mb.reason}; compiled: estimated peak {need / GIB:.1f} GiB")


def _compiled_split(trainer_cfg, mb: MicroBatchPlan, estimate, budget: int) -> MicroBatchPlan | None:
    """The largest micro-batch smaller than `mb`'s (a divisor of the step's rows, at least
    COMPILE_MEASURED_MIN_TOKENS) whose compiled step fits `budget` with nothing checkpointed or offloaded."""
    rows = mb.per_device_train_batch_size * mb.gradient_accumulation_steps
    length = int(trainer_cfg.max_length)
    for bs in divisors_desc(rows):
        if bs >= mb.per_device_train_batch_size and not (mb.checkpointed_layers or mb.offload):
            continue  # that split's compiled step was just found too big
        if bs * length < COMPILE_MEASURED_MIN_TOKENS:
            break
        need = _compiled_peak(estimate(bs * length, 0, False), estimate)
        if need <= budget:
            return MicroBatchPlan(bs, rows // bs, 0, False, need, True,
                                  f"{bs} rows x {rows // bs} accumulation, no checkpointing, compiled; estimated "
                                  f"peak {need / GIB:.1f} GiB, budget {budget / GIB:.1f} GiB")
    return None


def _compiled_bytes(mb: MicroBatchPlan | None, estimate) -> int | None:
    """The compiled step's estimated peak at the micro-batch plan's split (COMPILED_ACTIVATIONS x the estimated
    activations); None where its memory was not measured (no auto micro-batch plan, or one that checkpoints or
    offloads)."""
    if mb is None or estimate is None or mb.checkpointed_layers or mb.offload:
        return None
    return _compiled_peak(mb.estimate_bytes, estimate)


def _compiled_peak(eager_bytes: int, estimate) -> int:
    """The compiled step's peak from the eager one's estimate (nothing checkpointed or offloaded): the same fixed
    bytes (weights, adapters, buffers: estimate(0, 0, False)) and COMPILED_ACTIVATIONS x its activations."""
    fixed = estimate(0, 0, False)
    return fixed + int(COMPILED_ACTIVATIONS * (eager_bytes - fixed))


def use_fixed_shape(trainer_cfg, compiled: bool) -> bool:
    """auto: on exactly where the decoder layers are compiled. Fixed shapes cost padding (the last micro-batches of
    a packed epoch, short rows padded) and pay only where they let the compiler specialise on one shape: compiled
    layers with flex_attention must have them (Inductor fails to lower flex_attention under dynamic shapes, torch
    2.11: bench/RESULTS.md, issue 23), and a compiled layer without them recompiles or runs dynamic-shaped.
    true / false: as said (compile on with fixed_shape=false: dynamic shapes)."""
    value = _switch(trainer_cfg, "fixed_shape")
    return value == "true" or (value == "auto" and compiled)


def fixed_shape_tokens(trainer_cfg, per_device_train_batch_size: int) -> int:
    """The one length every training micro-batch is padded to: packed, its rows' documents flattened into one
    sequence of rows x max_length tokens; padded rows, max_length each."""
    rows = per_device_train_batch_size if trainer_cfg.packing else 1
    return rows * int(trainer_cfg.max_length)


def offload_choice(trainer_cfg) -> str:
    return _switch(trainer_cfg, "activation_offloading")


def estimate_fn(trainer_cfg, lora_cfg, quant_mode: str, arch: memory.Arch, liger: bool, attention: str, fused: bool,
                targets):
    """estimate(tokens, checkpointed_layers, offload) -> bytes: medchat.memory's model, with the fused LoRA
    keeping no dropout copies and offloading moving the checkpointed layers' inputs to host memory."""
    base = functools.partial(
        memory.estimate_peak_bytes, arch, quant_mode=quant_mode, lora_r=lora_cfg.r,
        lora_targets=list(targets), lora_dropout=0.0 if fused else lora_cfg.lora_dropout,
        liger=liger, attention=attention, sequence=trainer_cfg.max_length)

    def estimate(tokens: int, checkpointed: int, offload: bool) -> int:
        need = base(tokens=tokens, checkpointed_layers=checkpointed)
        if offload:
            # TRL's offloading moves the checkpointed inputs (and part of the recompute) to host memory.
            # Calibrated on one H200 (bench/results/h200_call{1,2}_*.json, Mistral-7B, all layers
            # checkpointed): measured 5.53 GiB at 1,024 tokens and 6.21 at 4,096, where this model without the
            # last line said 6.06 and 6.53: 0.60 GiB less, 71 KiB per token more.
            need -= tokens * checkpointed * 2 * arch.hidden
            need += (tokens * 71 * 1024 - int(0.60 * GIB)) * checkpointed // max(arch.layers, 1)
            # The calibration's -0.60 GiB is a 7B model's: on a small one it would promise less than the
            # weights, adapters and fixed buffers alone (even a negative peak). Offloading moves activations only.
            need = max(need, base(tokens=0, checkpointed_layers=checkpointed))
        return need

    return estimate


def micro_batch_plan(trainer_cfg, lora_cfg, quant_mode: str, hw: Hardware, arch: memory.Arch, *, liger: bool,
                     attention: str, fused: bool, targets) -> MicroBatchPlan | None:
    """The auto micro-batch plan (see medchat.speed.microbatch), or None where it does not apply."""
    t = trainer_cfg
    value = str(t.micro_batch).lower()  # auto | fixed (medchat.config.CHOICES, checked by config_checks.validate)
    budget = memory.memory_budget_bytes(t.memory_budget_gib, hw.gpu_memory_bytes)
    if (value != "auto" or not hw.cuda or hw.fsdp or budget is None
            or memory.normalize_checkpointing(t.gradient_checkpointing) != "auto"):
        return None
    result = choose_micro_batch(
        rows_per_step=t.per_device_train_batch_size * t.gradient_accumulation_steps,
        configured_batch=t.per_device_train_batch_size, max_length=t.max_length, layers=arch.layers,
        budget_bytes=budget, estimate=estimate_fn(t, lora_cfg, quant_mode, arch, liger, attention, fused, targets))
    if offload_choice(t) == "false" and result.offload:
        result = MicroBatchPlan(result.per_device_train_batch_size, result.gradient_accumulation_steps,
                                result.checkpointed_layers, False, result.estimate_bytes, False,
                                result.reason + " (offloading wanted but trainer.activation_offloading=false)")
    if not result.fits:
        log.warning("micro-batch plan: %s: the step will likely run out of memory", result.reason)
    return result


def checkpointing_of(mb: MicroBatchPlan, layers: int) -> memory.CheckpointPlan:
    """The micro-batch plan's checkpointed-layer count as transformers' every_n_layers."""
    if mb.checkpointed_layers == 0:
        return memory.CheckpointPlan(False, estimate_bytes=mb.estimate_bytes, reason="auto micro-batch: " + mb.reason)
    every = next(n for n in range(layers, 0, -1) if math.ceil(layers / n) == mb.checkpointed_layers)
    return memory.CheckpointPlan(True, every, mb.checkpointed_layers, mb.estimate_bytes,
                                 "auto micro-batch: " + mb.reason)


def apply(trainer, plan) -> dict:
    """Fuse and compile the trainer's model in place as the run plan says; returns what was done (for metrics
    and the bench). A compiled layer whose compilation fails falls back to eager, under trainer.compile=auto and
    true alike, and the dict says so (compiled_layers 0, compile_failed)."""
    done = {"fused_lora_projections": 0, "compiled_layers": 0}
    if plan.fused_lora:
        from medchat.speed.fused_lora import fuse_lora

        done["fused_lora_projections"] = fuse_lora(trainer.model)
    if plan.compile:
        from medchat.speed.compile import EAGER_ROUNDING, compile_layers

        def fell_back(error: Exception) -> None:  # metrics.json's speed section says so too
            done["compiled_layers"] = 0
            done["compile_failed"] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
            log.warning("compile: the compiler failed (%s); training goes on eager, the same layers uncompiled "
                        "(trainer.compile=false skips compiling)", done["compile_failed"])

        # one shape for every step (trainer.fixed_shape): compile for it alone; else shapes are dynamic
        done["compiled_layers"] = compile_layers(trainer.model, dynamic=plan.fixed_shape_tokens is None,
                                                 options=EAGER_ROUNDING, on_failure=fell_back)
    return done
