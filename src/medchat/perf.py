"""Speed choices made from the config's `auto` values and the machine, and launch checks that fail fast.

- attention: flash_attention_2 when installed, else flex_attention on a CUDA GPU (block-sparse per-document
  masks for packed rows), else sdpa. All three keep packed documents apart: transformers derives a
  per-document causal mask from the restarting `position_ids` whenever there is no KV cache
  (`use_cache=False`, which medchat sets).
- Liger kernels (fused RMSNorm, SwiGLU, RoPE): on a CUDA GPU when `liger_kernel` is importable.
- activation checkpointing: none when the estimated peak fits the memory budget, else every n-th decoder
  layer (transformers' `every_n_layers`) with the smallest number of checkpointed layers that fits, else all
  layers; `estimate_peak_bytes` is the model behind it (calibrated on an H100: bench/RESULTS.md).

Everything here is a pure function of its arguments plus, where named, `torch.cuda`, so the choices are
unit-tested on a machine without a GPU (tests/test_perf.py).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from dataclasses import dataclass

import torch

from medchat.config import ConfigError

log = logging.getLogger(__name__)
GIB = 2**30
CHECKPOINTING = ("auto", "true", "false", "partial")
# Bytes per weight as stored: 4-bit packs two weights a byte, plus ~0.5 bit of (double-quantized) scales.
WEIGHT_BYTES = {"nf4": 0.53, "fp4": 0.53, "int8": 1.03, "none": 2.0}


def has_cuda() -> bool:
    return torch.cuda.is_available()


# ----- attention and kernels ---------------------------------------------------------------------------

def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def flex_attention_available() -> bool:
    return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None


def choose_attention(choice: str, *, cuda: bool, half_precision: bool, supports_flex: bool = True) -> str:
    """model.attn_implementation -> the transformers name. `auto` takes the fastest kernel that keeps
    packed documents apart on this machine (see the module docstring)."""
    if choice != "auto":
        return choice
    if not cuda:
        return "sdpa"  # flex on CPU compiles through a C++ toolchain and is no faster there
    if half_precision and flash_attn_installed():
        return "flash_attention_2"
    if supports_flex and flex_attention_available():
        return "flex_attention"
    return "sdpa"


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def choose_liger(choice: str, *, cuda: bool) -> bool:
    """trainer.use_liger_kernel: auto -> on a CUDA GPU when liger-kernel is installed."""
    choice = str(choice).lower()
    if choice == "auto":
        return cuda and liger_installed()
    if choice == "true":
        if not cuda:
            raise ConfigError("trainer.use_liger_kernel=true needs a CUDA GPU (Liger's kernels are Triton); use auto")
        if not liger_installed():
            raise ConfigError("trainer.use_liger_kernel=true but liger-kernel is not installed: pip install "
                              "'medchat[gpu]' (or liger-kernel), or set trainer.use_liger_kernel=auto")
        return True
    if choice == "false":
        return False
    raise ConfigError(f"trainer.use_liger_kernel={choice!r} is not one of auto, true, false")


# ----- memory model and checkpointing policy -------------------------------------------------------------

@dataclass(frozen=True)
class Arch:
    """The shape numbers the memory model needs (a Llama/Mistral/Qwen-style decoder)."""

    layers: int
    hidden: int
    intermediate: int
    kv_dim: int
    vocab: int
    heads: int = 32

    @classmethod
    def from_config(cls, config) -> "Arch":
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            kv_dim=kv_heads * head_dim,
            vocab=config.vocab_size,
            heads=heads,
        )

    def linear_params_per_layer(self) -> int:
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        return h * (h + 2 * kv) + h * h + 3 * h * i

    def lora_params_per_layer(self, r: int, targets: list[str]) -> int:
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                  "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        return sum(r * sum(shapes.get(t, (h, h))) for t in targets)


def layer_activation_bytes(arch: Arch, *, lora_dropout: float, liger: bool, attention: str = "flex_attention",
                           sequence: int = 0, dtype_bytes: int = 2) -> int:
    """Bytes one decoder layer keeps for backward, per token, when it is not checkpointed.

    Counted: the layer input and both norm outputs, q, attention output, the residual (5 hidden), k and v
    (2 kv), gate, up and their product (3 intermediate). HF's SwiGLU also keeps the activation (+1
    intermediate) and its RMSNorm fp32 copies (+3 hidden); Liger's kernels recompute those. LoRA dropout keeps
    a dropped copy of every adapted input (q, k, v, o, gate, up: hidden; down: intermediate). sdpa with a
    packed (block-diagonal) mask keeps ~3 hidden more than flex/flash; eager keeps the attention
    probabilities of every head over the whole `sequence`.
    Calibrated on an H100 (bench/RESULTS.md): Mistral-7B measured 125 KiB/token without dropout and
    195 KiB with dropout 0.05 (Liger, flex), 245 KiB without Liger, 215 KiB with sdpa; this model says 128,
    204, 257 and 228.
    """
    h, kv, i = arch.hidden, arch.kv_dim, arch.intermediate
    elements = 5 * h + 2 * kv + 3 * i + (0 if liger else i + 3 * h)
    if lora_dropout > 0:
        elements += 6 * h + i
    if attention == "sdpa":
        elements += 3 * h
    elif attention == "eager":
        elements += 2 * arch.heads * sequence
    return dtype_bytes * elements


def estimate_peak_bytes(arch: Arch, *, tokens: int, checkpointed_layers: int, quant_mode: str, lora_r: int,
                        lora_targets: list[str], lora_dropout: float, liger: bool, attention: str = "flex_attention",
                        sequence: int = 2048, world_size: int = 1) -> int:
    """Estimated peak allocated memory of one training step (one GPU): weights, LoRA weights with their
    gradients and AdamW state in fp32, and activations of `tokens` tokens per micro-batch (packed rows of up
    to `sequence` tokens). A checkpointed
    layer keeps only its input, and its activations exist again, one layer at a time, during the backward."""
    weights = arch.layers * arch.linear_params_per_layer() * WEIGHT_BYTES[quant_mode] + 2 * arch.vocab * arch.hidden * 2
    adapters = arch.layers * arch.lora_params_per_layer(lora_r, lora_targets) * 16
    per_layer = layer_activation_bytes(arch, lora_dropout=lora_dropout, liger=liger, attention=attention,
                                       sequence=sequence)
    kept = arch.layers - checkpointed_layers
    activations = tokens * (kept * per_layer + checkpointed_layers * 2 * arch.hidden)
    recompute = tokens * per_layer if checkpointed_layers else 0
    # embeddings, final norm, the fused LM head's tiles and the dequantized weight of the widest layer
    fixed = 0.5 * GIB + tokens * arch.hidden * 2 * 4 + 2 * arch.hidden * arch.intermediate * 2
    return int(weights / world_size + adapters + activations + recompute + fixed)


@dataclass(frozen=True)
class CheckpointPlan:
    enabled: bool
    every_n_layers: int = 1
    checkpointed_layers: int = 0
    estimate_bytes: int | None = None
    reason: str = ""

    def kwargs(self) -> dict:
        """gradient_checkpointing_kwargs for transformers (always non-reentrant)."""
        kwargs = {"use_reentrant": False}
        if self.enabled and self.every_n_layers > 1:
            kwargs["every_n_layers"] = self.every_n_layers
        return kwargs


def normalize_checkpointing(value) -> str:
    text = str(value).lower()
    if text not in CHECKPOINTING:
        raise ConfigError(f"trainer.gradient_checkpointing={value!r} is not one of {', '.join(CHECKPOINTING)}")
    return text


def checkpointed(layers: int, every_n: int) -> int:
    return math.ceil(layers / every_n)


def plan_checkpointing(choice, *, every_n_layers: int | None, layers: int | None, estimate=None,
                       budget_bytes: int | None = None) -> CheckpointPlan:
    """trainer.gradient_checkpointing -> CheckpointPlan.

    `estimate(checkpointed_layers) -> bytes` and `budget_bytes` are only needed for `auto` on a GPU; with
    either missing (no GPU, or a launch whose memory cannot be estimated) `auto` means no checkpointing
    without a GPU and full checkpointing with one.
    """
    choice = normalize_checkpointing(choice)
    if choice == "false":
        return CheckpointPlan(False, reason="trainer.gradient_checkpointing=false")
    if choice == "true":
        return CheckpointPlan(True, 1, layers or 0, reason="trainer.gradient_checkpointing=true")
    if choice == "partial":
        if not every_n_layers or every_n_layers < 2:
            raise ConfigError("trainer.gradient_checkpointing=partial needs trainer.checkpoint_every_n_layers >= 2 "
                              "(checkpoint every n-th decoder layer)")
        return CheckpointPlan(True, every_n_layers, checkpointed(layers, every_n_layers) if layers else 0,
                              reason=f"trainer.checkpoint_every_n_layers={every_n_layers}")
    if not has_cuda():
        return CheckpointPlan(False, reason="auto: no GPU, checkpointing would only cost time")
    if estimate is None or budget_bytes is None or not layers:
        return CheckpointPlan(True, 1, layers or 0, reason="auto: memory not estimated, checkpointing every layer")
    options = [(False, 1, 0)] + [(True, n, checkpointed(layers, n)) for n in range(layers, 1, -1)] + [(True, 1, layers)]
    seen = set()
    for enabled, n, count in options:
        if count in seen:
            continue
        seen.add(count)
        need = estimate(count)
        if need <= budget_bytes:
            what = "none" if not enabled else f"{count} of {layers} layers (every {n})" if n > 1 else "all layers"
            return CheckpointPlan(enabled, n, count, need, f"auto: checkpointing {what}; estimated peak "
                                  f"{need / GIB:.1f} GiB within the {budget_bytes / GIB:.1f} GiB budget")
    need = estimate(layers)
    log.warning(
        "estimated peak memory %.1f GiB exceeds the %.1f GiB budget even with every layer checkpointed: the step "
        "will likely run out of memory. Lower trainer.per_device_train_batch_size or trainer.max_length (raise "
        "trainer.gradient_accumulation_steps to keep the batch), or use a GPU with more memory",
        need / GIB, budget_bytes / GIB)
    return CheckpointPlan(True, 1, layers, need, "auto: over budget even with every layer checkpointed")


def gpu_memory_bytes(device: int = 0) -> int:
    return torch.cuda.get_device_properties(device).total_memory


def memory_budget_bytes(budget_gib: float | None, device: int = 0) -> int:
    """trainer.memory_budget_gib, or 85% of the GPU (room for the allocator's fragmentation and CUDA's context)."""
    if budget_gib is not None:
        return int(budget_gib * GIB)
    return int(0.85 * gpu_memory_bytes(device))


# ----- launch checks -----------------------------------------------------------------------------------

def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def fsdp_enabled() -> bool:
    """`accelerate launch` with an FSDP config sets ACCELERATE_USE_FSDP for every process."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def check_processes_vs_gpus() -> None:
    """More processes on a machine than visible GPUs makes two ranks share a GPU (NCCL refuses or hangs):
    refuse before anything is loaded."""
    if not has_cuda():
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpus = torch.cuda.device_count()
    if world_size() == 1 and gpus > 1:
        # One process would see several GPUs: Trainer would wrap the model in nn.DataParallel, which TRL refuses
        # only after the model has loaded.
        raise ConfigError(
            f"{gpus} GPUs are visible to a single training process. Train on all of them with one process per GPU: "
            f"accelerate launch --config_file conf/accelerate/ddp.yaml --num_processes {gpus} train.py ...; "
            "or on one GPU: CUDA_VISIBLE_DEVICES=0 python train.py ..."
        )
    if local > gpus or rank >= gpus:
        raise ConfigError(
            f"{local} training processes on this machine but {gpus} visible GPU(s): each process needs its own GPU. "
            f"Launch with --num_processes {gpus} (accelerate) or --nproc_per_node {gpus} (torchrun), or make more "
            "GPUs visible with CUDA_VISIBLE_DEVICES"
        )


def check_fsdp_quantization(quant_cfg, model_dtype: torch.dtype) -> None:
    """FSDP shards only floating-point tensors of one dtype per wrapped unit: 4-bit weights must be stored
    as the model's dtype (bnb_4bit_quant_storage), and 8-bit weights cannot be sharded at all."""
    if not fsdp_enabled() or quant_cfg.mode == "none":
        return
    if quant_cfg.mode == "int8":
        raise ConfigError("FSDP cannot shard bitsandbytes 8-bit weights (int8 storage): use quant=nf4 with "
                          "quant.quant_storage=bfloat16, or DDP (conf/accelerate/ddp.yaml) if the model fits one GPU")
    names = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
    if quant_cfg.quant_storage is not None and quant_cfg.quant_storage != names[model_dtype]:
        raise ConfigError(
            f"FSDP with quant.mode={quant_cfg.mode}: quant.quant_storage={quant_cfg.quant_storage} must equal the "
            f"model's dtype ({names[model_dtype]}) so that FSDP can flatten 4-bit and regular weights together; "
            f"set quant.quant_storage={names[model_dtype]} (or leave it null: medchat then sets it under FSDP)"
        )


def oom_advice(cfg, every_layer_checkpointed: bool) -> str:
    t = cfg.trainer
    tips = [f"lower trainer.per_device_train_batch_size (now {t.per_device_train_batch_size}) and raise "
            f"trainer.gradient_accumulation_steps (now {t.gradient_accumulation_steps}) to keep the batch",
            f"lower trainer.max_length (now {t.max_length})"]
    if not every_layer_checkpointed:
        tips.insert(0, "set trainer.gradient_checkpointing=true (checkpoint every layer), or lower "
                       "trainer.memory_budget_gib so that auto checkpoints more layers")
    return "the training step ran out of GPU memory. To fit it: " + "; ".join(tips)
