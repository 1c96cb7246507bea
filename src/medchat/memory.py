"""The memory model of one QLoRA training step, and the activation-checkpointing policy built on it.

`estimate_peak_bytes` says how much GPU memory a step needs for a given number of checkpointed decoder
layers (calibrated on an H100: bench/RESULTS.md); `plan_checkpointing` turns trainer.gradient_checkpointing
(+ trainer.memory_budget_gib) into a CheckpointPlan: none when the estimated peak fits the budget, else every
n-th decoder layer (transformers' `every_n_layers`) with the smallest number of checkpointed layers that
fits, else all layers. Pure functions of their arguments: medchat.plan calls them with the machine's numbers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

from medchat.config import CHOICES, ConfigError

log = logging.getLogger(__name__)
GIB = 2**30
CHECKPOINTING = CHOICES["trainer.gradient_checkpointing"]
# Bytes per weight as stored: 4-bit packs two weights a byte, plus ~0.5 bit of (double-quantized) scales.
WEIGHT_BYTES = {"nf4": 0.53, "fp4": 0.53, "int8": 1.03, "none": 2.0}


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

    def to_dict(self) -> dict:
        return asdict(self)

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


def plan_checkpointing(choice, *, cuda: bool, every_n_layers: int | None, layers: int | None, estimate=None,
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
    if not cuda:
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


def memory_budget_bytes(budget_gib: float | None, gpu_memory_bytes: int | None) -> int | None:
    """trainer.memory_budget_gib, or 85% of the GPU (room for the allocator's fragmentation and CUDA's context);
    None when neither is known."""
    if budget_gib is not None:
        return int(budget_gib * GIB)
    return int(0.85 * gpu_memory_bytes) if gpu_memory_bytes else None
