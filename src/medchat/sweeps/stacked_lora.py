"""Every job's LoRA on one projection of a pack, and the frozen base projection itself, as one autograd function.

For n jobs with equal row blocks x_k of the input, job k's output rows are

    y_k = x_k W^T + bias + s_k * B_k(A_k(dropout_k(x_k)))

which `StackedLoRA` computes as one base GEMM over all rows (one dequantize of a 4-bit W) and two batched GEMMs
(torch.bmm over jobs) for the adapters, A and B zero-padded to the widest rank (exact zeros in every sum; the
padding's gradients are cut off before they reach the jobs' parameters). Per job it is the arithmetic of a solo
run's fused LoRA (medchat.speed.fused_lora.LoRAFunction, what the sequential jobs train with): the base output,
then `addmm(y, h, B^T, alpha=s)` (the LoRA product added and scaled in the GEMM's fp32 accumulation, rounded
once); dropout as x * keep * 1/(1-p) in the compute dtype with one rounding; in backward dh = (dy B) * s,
dB = (dy^T h) * s, dA = dh^T dropout(x), dx = dy W + dropout'(dh A). Only the GEMM shapes differ (a batch of n
blocks instead of one), so a packed job differs from its solo run by bf16 accumulation order at most.

Bases it cannot compute exactly (bitsandbytes' 8-bit Linear8bitLt, any other nn.Linear subclass, a 4-bit layer
without its quant_state, a trained bias) are called as modules, and the function adds only the LoRA deltas
(`base=None`). Why fused: unfused, each projection of a pack launched the base module's kernels, the LoRA's,
and an add for the output and another for the input gradient (bench/packed_ops.py counts them), and the 7B pack
of call 12 ran at 0.67x the solo runs (bench/RESULTS.md, issue 24).

Memory: it keeps x (the base GEMM's backward needs it anyway), h = dropout(x) A^T (rank r: small) and, per job
with dropout, its generator's state before the mask was drawn: backward draws the same mask again."""

from __future__ import annotations

import math

import torch
from torch import nn

from medchat.speed.fused_lora import _compute_dtype, _is_4bit, dequantized_weight, exact_type


def fusable(base: nn.Module) -> bool:
    """A base projection StackedLoRA computes itself: one fused LoRA computes (fused_lora.exact_type: a plain
    nn.Linear or a bitsandbytes 4-bit layer, never Linear8bitLt), a 4-bit one with its quant_state, frozen (no
    gradient for its weight or bias)."""
    if not exact_type(base) or (_is_4bit(base) and getattr(base.weight, "quant_state", None) is None):
        return False
    return not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)


class StackedLoRA(torch.autograd.Function):
    """apply(x, base, scales, p, generators, *A_1..A_n, *B_1..B_n): x's rows are n equal blocks, one per job.
    base: the frozen projection (computed here, `fusable`) or None (only the LoRA deltas are returned)."""

    @staticmethod
    def forward(ctx, x, base, scales, p, generators, *weights):
        n = len(scales)
        a_list, b_list = weights[:n], weights[n:]
        dtype = _compute_dtype(x)
        r = max(w.shape[0] for w in a_list)
        with torch.autocast(x.device.type, enabled=False):
            xc = x.to(dtype)
            xs = xc.reshape(n, -1, x.shape[-1])
            a, b = _stack(a_list, b_list, r, dtype)
            states = [g.get_state() if g is not None else None for g in generators]
            xd = _masks(xs, p, states, generators).dropped_input(xs)
            h = torch.bmm(xd, a.transpose(1, 2))  # [n, M, r]
            del xd
            if base is not None:
                weight = dequantized_weight(base, dtype)
                bias = base.bias.to(dtype) if base.bias is not None else None
                y = nn.functional.linear(xs, weight, bias)  # [n, M, out]
                del weight
            else:
                y = xs.new_zeros((n, xs.shape[1], b.shape[1]))
            folded = _add_scaled(y, h, b.transpose(1, 2), scales)
        # the stacked (padded, cast) A and B are rank-r small: kept, not stacked again in backward
        ctx.save_for_backward(xc, h, a, b)
        ctx.base, ctx.scales, ctx.p, ctx.states, ctx.x_dtype = base, scales, p, states, x.dtype
        ctx.ranks, ctx.weight_dtype, ctx.folded = [w.shape[0] for w in a_list], a_list[0].dtype, folded
        return y.reshape(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x, h, a, b = ctx.saved_tensors
        n, p = len(ctx.scales), ctx.p
        dtype = a.dtype
        with torch.autocast(x.device.type, enabled=False):
            scale = _per_job(ctx.scales, x.device)
            dy = grad.to(dtype).reshape(n, -1, grad.shape[-1])
            dh = torch.bmm(dy, b).mul_(scale)  # [n, M, r]
            grad_b = torch.bmm(dy.transpose(1, 2), h)  # [n, out, r]
            if not ctx.folded:  # else h holds s * h already (exactly: s a power of two)
                grad_b.mul_(scale)
            xs = x.reshape(n, -1, x.shape[-1])
            masks = _masks(xs, p, ctx.states)  # the forward's masks, drawn once more for both uses below
            dx = None
            if ctx.needs_input_grad[0]:
                if ctx.base is not None:
                    weight = dequantized_weight(ctx.base, dtype, again=True)
                    dx = torch.matmul(dy, weight)  # [n, M, in]
                    del weight
                    if masks.none:
                        dx.baddbmm_(dh, a)
                    else:  # dropout's backward: the same mask and scale
                        dx.add_(masks.dropped_grad(torch.bmm(dh, a)))
                else:
                    dx = masks.dropped_grad(torch.bmm(dh, a))
                dx = dx.reshape(x.shape).to(ctx.x_dtype)
            xd = masks.dropped_input(xs)  # last: the Bernoulli masks are consumed in place
            del masks
            grad_a = torch.bmm(dh.transpose(1, 2), xd)  # [n, r, in]
            del xd
            # one cast of all jobs' gradients to the parameters' dtype, each job's its (unpadded) slice of it
            grad_a, grad_b = grad_a.to(ctx.weight_dtype), grad_b.to(ctx.weight_dtype)
        grads_a = [grad_a[k, :rk] for k, rk in enumerate(ctx.ranks)]
        grads_b = [grad_b[k, :, :rk] for k, rk in enumerate(ctx.ranks)]
        return (dx, None, None, None, None, *grads_a, *grads_b)


def _stack(a_list, b_list, r: int, dtype):
    """[n, r, in] and [n, out, r] in `dtype`, each job's A and B zero-padded to rank r (jobs at rank r unpadded)."""
    a = torch.stack([w if w.shape[0] == r else nn.functional.pad(w, (0, 0, 0, r - w.shape[0])) for w in a_list])
    b = torch.stack([w if w.shape[1] == r else nn.functional.pad(w, (0, r - w.shape[1])) for w in b_list])
    return a.to(dtype), b.to(dtype)


def _per_job(values, device):
    """One Python float where every job has the same value (a scalar operand: computed in fp32, rounded once);
    else an fp32 [n, 1, 1] tensor (an in-place product with it computes in fp32 too, rounded once)."""
    if all(v == values[0] for v in values):
        return float(values[0])
    return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1)


def _add_scaled(y, h, bt, scales) -> bool:
    """y_k += s_k * h_k bt_k, accumulated in the GEMM and rounded once (LoRAFunction's addmm). One baddbmm where
    every job has the same scaling; where they differ but each is a power of two (alpha and r powers of two: a
    sweep over lora.r at a fixed alpha), h is scaled in place first, which is exact, so one baddbmm computes the
    same; else one addmm per job. -> whether h now holds the scaled product (backward's dB then needs no scale)."""
    if all(s == scales[0] for s in scales):
        y.baddbmm_(h, bt, alpha=float(scales[0]))
        return False
    if all(float(s) > 0 and math.frexp(float(s))[0] == 0.5 for s in scales):
        h.mul_(torch.tensor(scales, dtype=h.dtype, device=h.device).view(-1, 1, 1))  # exact: powers of two
        y.baddbmm_(h, bt)
        return True
    for k, s in enumerate(scales):
        y[k].addmm_(h[k], bt[k], alpha=float(s))
    return False


# How the dropout masks are drawn. "bernoulli" (the default, measured on a GPU in call 13): each job's 0/1 mask
# from its generator (bernoulli_), applied as x * keep * 1/(1-p) in two more passes. "native": each job's mask and
# dropped input in one pass (aten.native_dropout, CUDA's fused dropout kernel, from the device's default generator
# set to the job's state and back), and dropout's backward in one (native_dropout_backward); the same arithmetic
# with other random numbers, fewer memory passes. A bench switch until a GPU measures it (bench/packed_sweep.py
# --masks).
MASKS = "bernoulli"


def _masks(xs, p, states, generators=None):
    if MASKS == "native" and all(pk > 0 for pk in p):
        return _NativeMasks(xs, p, states, generators)
    return _BernoulliMasks(xs, p, states, generators)


class _BernoulliMasks:
    def __init__(self, xs, p, states, generators=None):
        self.p, self.keep = p, _keep(xs, p, states, generators)
        self.none = self.keep is None

    def dropped_grad(self, t):
        return t if self.none else _dropped(t, self.keep, self.p)

    def dropped_input(self, xs):
        """x * keep * 1/(1-p), in place on the mask (so it is the last use of the masks)."""
        return xs if self.none else _dropped(self.keep, xs, self.p)


class _NativeMasks:
    """Each job's mask and dropped input from aten.native_dropout, drawn from the job's stream: the device's default
    generator is set to the job generator's state (forward) or to the state saved before that draw (backward), and
    restored after."""

    none = False

    def __init__(self, xs, p, states, generators=None):
        self.p = p
        self.xd = torch.empty_like(xs)
        self.mask = torch.empty(xs.shape, dtype=torch.bool, device=xs.device)
        default = _default_generator(xs.device)
        outside = default.get_state()
        try:
            for k, pk in enumerate(p):
                default.set_state(generators[k].get_state() if generators is not None else states[k])
                torch.ops.aten.native_dropout.out(xs[k], pk, True, out0=self.xd[k], out1=self.mask[k])
                if generators is not None:
                    generators[k].set_state(default.get_state())
        finally:
            default.set_state(outside)

    def dropped_grad(self, t):
        for k, pk in enumerate(self.p):
            torch.ops.aten.native_dropout_backward.out(t[k], self.mask[k], 1.0 / (1.0 - pk), out=t[k])
        return t

    def dropped_input(self, xs):
        return self.xd


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def _keep(xs, p, states, generators=None):
    """All jobs' keep masks (exact 0/1) in one tensor shaped and typed like xs, None where no job has dropout; job
    k's drawn from its generator (forward) or from a copy set to the state saved before that draw (backward)."""
    if not any(pk > 0 for pk in p):
        return None
    keep = torch.empty_like(xs)
    for k, pk in enumerate(p):
        if pk > 0:
            if generators is not None:
                gen = generators[k]
            else:
                gen = _replay_generator(xs.device)
                gen.set_state(states[k])
            keep[k].bernoulli_(1.0 - pk, generator=gen)
        else:
            keep[k].fill_(1.0)
    return keep


_REPLAY: dict[torch.device, torch.Generator] = {}


def _replay_generator(device: torch.device) -> torch.Generator:
    """One generator per device that backward sets to each saved state in turn (backward runs on one thread per
    device), instead of a new Generator object per job and projection."""
    if device not in _REPLAY:
        _REPLAY[device] = torch.Generator(device=device)
    return _REPLAY[device]


def _dropped(t, other, p):
    """t * other * 1/(1-p_k) per job, in place on t: the product with a 0/1 mask is exact and the scale applied
    in fp32 and rounded once (LoRAFunction's `(x * keep).mul_(1/(1-p))`)."""
    inverse = _per_job([1.0 / (1.0 - pk) if pk > 0 else 1.0 for pk in p], t.device)
    return t.mul_(other).mul_(inverse)
