"""A fused LoRA projection: one autograd function for `base(x) + scale * B(A(dropout(x)))`.

PEFT's LoRA layer runs the frozen base layer, clones its output (a 4-bit workaround), then dropout, two
rank-r GEMMs, a scale and an add, each its own kernel and each keeping its own tensors for backward. With
`lora_dropout > 0` every adapted projection keeps its own dropped copy of the input (bench/RESULTS.md: 8.7 GiB
at 4,096 tokens on Mistral-7B), which is why Unsloth's fast path refuses dropout altogether.

`LoRAFunction` instead
- keeps only the input `x` (the same tensor q, k and v share: no copy per projection), the rank-r
  intermediate `h = dropout(x) @ A^T` (T x r: tiny) and a 64-bit seed. Backward regenerates the dropout mask
  from the seed, so dropout costs no activation memory (and no recipe change);
- folds scale and add into the second GEMM (`addmm`), drops the clone, and in backward folds the LoRA input
  gradient into the base input gradient when there is no dropout;
- dequantizes 4-bit weights again in backward, as bitsandbytes itself does (nothing of the weight is kept).

The numbers are PEFT's up to bf16 rounding order (tests/test_speed.py checks values and gradients against
PEFT's own forward, on CPU, with and without dropout, plain and 4-bit, with trained base biases; the GPU
record is bench/equivalence.py's in bench/RESULTS.md). Dropout scales the kept inputs by 1/(1-p) computed
once in fp32 and rounded once, as CUDA's dropout kernel does, never through a mask rounded to bf16 first
(1/0.95 is 1.0547 in bf16: +0.2% on every kept input).

`fuse_lora(model)` swaps the forward of every PEFT `lora.Linear` / `lora.Linear4bit` it can serve: one plain
LoRA adapter (no DoRA/variants, no LoRA bias) over a plain `nn.Linear` or a bitsandbytes 4-bit layer. Not
served, so left to PEFT: bitsandbytes int8 (`Linear8bitLt` subclasses `nn.Linear`, but its weight holds int8
codes whose scale is in `SCB`), any other `nn.Linear` subclass. At call time anything else falls back to
PEFT's own forward: eval mode and generation (nothing to save for backward there), adapters disabled or
merged, several active adapters, mixed-batch `adapter_names`, and a 4-bit weight that lost its `quant_state`
(FSDP re-wraps parameters; bitsandbytes restores the state on its own forward path only). The run plan keeps
fused LoRA off under FSDP and for int8 altogether (medchat.speed.apply.use_fused_lora).
"""

from __future__ import annotations

import logging
import types

import torch

log = logging.getLogger(__name__)
FUSED_FLAG = "_medchat_fused_lora"
SEED_ATTR = "_medchat_dropout_seed"


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """What the surrounding mixed precision computes in (autocast's dtype), else the input's dtype."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _keep(x: torch.Tensor, p: float, seed) -> torch.Tensor:
    """The dropout keep-mask (exact 0/1 in x's dtype), a pure function of (seed, shape, device). `seed`: an int,
    or a CPU int64 tensor (the compiled path's, see `seed_tensors`), read inside the opaque op below."""
    if isinstance(seed, torch.Tensor):
        return dropout_keep(x, p, seed)
    return _keep_mask(x, p, seed)


def _keep_mask(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=gen)


# torch.compile cannot trace a seeded torch.Generator (a graph break in every projection), and a Python int seed
# would be a constant that recompiles the layer every step. As a custom op the mask is opaque to the compiler:
# its seed is a CPU tensor input (no device sync, no recompilation), its output the same mask as eager's.
@torch.library.custom_op("medchat::dropout_keep", mutates_args=())
def dropout_keep(x: torch.Tensor, p: float, seed: torch.Tensor) -> torch.Tensor:
    return _keep_mask(x, p, int(seed))


@dropout_keep.register_fake
def _(x: torch.Tensor, p: float, seed: torch.Tensor) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _dropped(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """x * keep / (1-p): the product with the 0/1 mask is exact and the scale a Python float, so a bf16 input
    is scaled in fp32 and rounded once (CUDA's dropout kernel computes the same)."""
    return (x * keep).mul_(1.0 / (1.0 - p))


def dequantized_weight(base: torch.nn.Module, dtype: torch.dtype, *, again: bool = False) -> torch.Tensor:
    """The base layer's weight [out, in] in `dtype` (bitsandbytes 4-bit weights dequantized).

    again=True (backward's call): the packed codes are passed under another shape (bitsandbytes reads them flat).
    Compiled, forward's and backward's dequantize would otherwise be one call to the compiler (same op, same
    inputs: AOTAutograd's common-subexpression pass merges them), whose result the partitioner must then keep from
    forward to backward: every projection's full bf16 weight, 14 GiB on a 7B model (bench/RESULTS.md, issue 23).
    Distinct inputs keep backward's dequantize in backward, as eager runs it."""
    weight = base.weight
    quant_state = getattr(weight, "quant_state", None)
    if quant_state is not None:
        import bitsandbytes.functional as bnbf

        packed = weight.data
        if again:
            packed = packed.reshape(-1) if packed.dim() > 1 else packed.reshape(-1, 1)
        return bnbf.dequantize_4bit(packed, quant_state).to(dtype)
    return weight.to(dtype)


class LoRAFunction(torch.autograd.Function):
    """y = x @ W^T + bias + scale * (dropout(x) @ A^T) @ B^T, W frozen, A [r, in] and B [out, r] trained.

    `bias` is the base layer's bias, passed as an input so that it gets its gradient when `lora.bias=all` or
    `lora_only` makes it trainable (as in PEFT, where it is an ordinary parameter of the base layer)."""

    @staticmethod
    def forward(ctx, x, lora_a, lora_b, bias, base, scale: float, p: float, seed):
        dtype = _compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(dtype)
            x2 = x.reshape(-1, x.shape[-1])
            weight = dequantized_weight(base, dtype)
            y = torch.nn.functional.linear(x2, weight, bias.to(dtype) if bias is not None else None)
            del weight
            a, b = lora_a.to(dtype), lora_b.to(dtype)
            xd = _dropped(x2, _keep(x2, p, seed), p) if p > 0 else x2
            h = xd @ a.t()
            y = torch.addmm(y, h, b.t(), alpha=scale)
        if isinstance(seed, torch.Tensor):  # the compiled path: a tensor input, saved as one
            ctx.save_for_backward(x, h, lora_a, lora_b, seed)
            ctx.seed = None
        else:
            ctx.save_for_backward(x, h, lora_a, lora_b)
            ctx.seed = seed
        ctx.base, ctx.scale, ctx.p, ctx.dtype = base, scale, p, dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y.reshape(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        x, h, lora_a, lora_b, *seed = ctx.saved_tensors
        seed = seed[0] if seed else ctx.seed
        dtype, scale, p = ctx.dtype, ctx.scale, ctx.p
        with torch.autocast(dy.device.type, enabled=False):
            dy2 = dy.reshape(-1, dy.shape[-1]).to(dtype)
            x2 = x.reshape(-1, x.shape[-1])
            a, b = lora_a.to(dtype), lora_b.to(dtype)
            keep = _keep(x2, p, seed) if p > 0 else None
            dh = (dy2 @ b).mul_(scale)  # [T, r]
            grad_b = (dy2.t() @ h).mul_(scale) if lora_b.requires_grad else None
            grad_a = None
            if lora_a.requires_grad:
                xd = _dropped(x2, keep, p) if keep is not None else x2
                grad_a = dh.t() @ xd
                del xd
            grad_bias = dy2.sum(0).to(ctx.bias_dtype) if ctx.needs_input_grad[3] else None
            dx = None
            if ctx.needs_input_grad[0]:
                weight = dequantized_weight(ctx.base, dtype, again=True)
                if keep is None:
                    dx = torch.addmm(dy2 @ weight, dh, a)
                else:
                    dx = dy2 @ weight
                    dx.add_(_dropped(dh @ a, keep, p))  # dropout's backward: the same mask and scale
                del weight
                dx = dx.reshape(x.shape)
        grad_a = grad_a.to(lora_a.dtype) if grad_a is not None else None
        grad_b = grad_b.to(lora_b.dtype) if grad_b is not None else None
        return dx, grad_a, grad_b, grad_bias, None, None, None, None


def _eligible(module) -> bool:
    """A PEFT LoRA linear layer of the plain kind this function computes."""
    if not (hasattr(module, "lora_A") and hasattr(module, "base_layer") and hasattr(module, "scaling")):
        return False
    if getattr(module, "lora_variant", None):  # DoRA & co: their own math
        return False
    if any(getattr(module, "lora_bias", {}).values()):
        return False
    if getattr(module, "fan_in_fan_out", False):
        return False
    return exact_type(module.get_base_layer())


def exact_type(base) -> bool:
    """A base projection whose function is x @ weight^T (+ bias) as LoRAFunction computes it: exact types only,
    since bitsandbytes' Linear8bitLt (int8 codes + SCB scale) and other nn.Linear subclasses compute something
    else. (A 4-bit layer also needs its quant_state when it runs.)"""
    return type(base) is torch.nn.Linear or _is_4bit(base)


def _is_4bit(base) -> bool:
    return type(base).__name__ in ("Linear4bit", "LinearNF4", "LinearFP4")


def _fused_forward(self, x, *args, **kwargs):
    active = [n for n in self.active_adapters if n in self.lora_A]
    base = self.get_base_layer()
    if (not self.training or self.disable_adapters or self.merged or args or kwargs or len(active) != 1
            or active[0] in getattr(self, "lora_variant", {})
            or (_is_4bit(base) and getattr(base.weight, "quant_state", None) is None)):
        return self._medchat_peft_forward(x, *args, **kwargs)
    name = active[0]
    dropout = self.lora_dropout[name]
    p = float(dropout.p) if isinstance(dropout, torch.nn.Dropout) else 0.0
    # The seed comes from the CPU generator: no device sync, and reproducible under set_seed / resume. Under
    # seed_tensors (what compile_layers installs) it is this module's seed tensor, drawn before each forward of
    # the model, compiled or not: the same masks either way. (Compiled without it, the int seed would be a
    # constant: a recompilation per step until Dynamo gives up and runs the layer eagerly. compile_layers installs it.)
    seed = getattr(self, SEED_ATTR, None) if p > 0 else 0
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return LoRAFunction.apply(x, self.lora_A[name].weight, self.lora_B[name].weight, base.bias, base,
                              float(self.scaling[name]), p, seed)


def fuse_lora(model) -> int:
    """Route every eligible PEFT LoRA linear layer of `model` through LoRAFunction; returns how many."""
    count = 0
    for module in model.modules():
        if getattr(module, FUSED_FLAG, False) or not _eligible(module):
            continue
        module._medchat_peft_forward = module.forward
        module.forward = types.MethodType(_fused_forward, module)
        setattr(module, FUSED_FLAG, True)
        count += 1
    log.info("fused LoRA: %d projections", count)
    return count


def unfuse_lora(model) -> int:
    count = 0
    for module in model.modules():
        if getattr(module, FUSED_FLAG, False):
            module.forward = module._medchat_peft_forward
            del module._medchat_peft_forward
            setattr(module, FUSED_FLAG, False)
            count += 1
    return count


def seed_tensors(model) -> int:
    """Give every fused projection with dropout a CPU seed tensor, redrawn from the CPU generator by a forward
    pre-hook on `model` (outside any compiled layer) before each forward: the compiled layers read their masks'
    seeds from these tensors (inputs, not constants). Gradient checkpointing's recompute runs within the same
    forward's backward, so it reads the same seeds and regenerates the same masks. Returns how many."""
    fused = [m for m in model.modules() if getattr(m, FUSED_FLAG, False)
             and any(isinstance(d, torch.nn.Dropout) and d.p > 0 for d in m.lora_dropout.values())]
    if not fused or getattr(model, "_medchat_seed_hook", None) is not None:
        return len(fused)
    for m in fused:
        setattr(m, SEED_ATTR, torch.zeros((), dtype=torch.int64))

    def draw(_module, _args):
        for m, value in zip(fused, torch.randint(0, 2**62, (len(fused),)).tolist()):
            getattr(m, SEED_ATTR).fill_(value)

    model._medchat_seed_hook = model.register_forward_pre_hook(draw)
    return len(fused)
