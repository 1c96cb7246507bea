"""The largest micro-batch that fits the memory budget, at the optimizer-step batch the config asks for.

The optimizer sees `per_device_train_batch_size x gradient_accumulation_steps` packed rows per step (the
recipe); how they are split into micro-batches is a speed/memory choice. Larger micro-batches amortise the
per-kernel launch cost, checkpointing recomputes a checkpointed layer's forward, and offloading the checkpointed
layers' inputs to host memory costs transfers. The eager step is launch-bound: each micro-batch costs about the
same host time whatever its size, so splitting a step in two nearly doubles it (one H100, Mistral-7B shape,
bench/RESULTS.md issue 23: 2 x 1,024 tokens with accumulation 2 ran at 0.45x the 4 x 1,024 step), while
recomputing layers adds a fraction of one forward (every layer checkpointed: 0.52x, the most it costs). Measured
in one call on one H200 (call 13): under 23 GiB, 4 x 1,024 with 11 of 32 layers checkpointed ran at 8,036 tokens/s
(20.6 GiB) against 5,188 for the 2 x 1,024 x 2 split (16.8 GiB), 1.55x.
`choose_micro_batch` picks, in this order of preference:

1. the largest micro-batch at least the configured one (a divisor of the step's rows) that fits with no
   checkpointing;
2. else the configured micro-batch with the fewest checkpointed layers that fits (all layers included);
3. else the largest smaller micro-batch that fits with no checkpointing;
4. else the largest micro-batch that fits with every layer checkpointed;
5. else the same with the checkpointed inputs offloaded to host memory (trainer.activation_offloading);
6. else one row per micro-batch, everything checkpointed and offloaded, with a warning from the caller.

It is a pure function of the memory model (`estimate(tokens, checkpointed_layers, offload) -> bytes`), so it
is unit-tested without a GPU (tests/test_speed.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

GIB = 2**30


@dataclass(frozen=True)
class MicroBatchPlan:
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    checkpointed_layers: int
    offload: bool
    estimate_bytes: int
    fits: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def checkpoint_counts(layers: int) -> list[int]:
    """Checkpointed-layer counts transformers' every_n_layers can express, fewest first."""
    counts = sorted({-(-layers // n) for n in range(layers, 0, -1)})
    return counts


def choose_micro_batch(*, rows_per_step: int, configured_batch: int, max_length: int, layers: int,
                       budget_bytes: int, estimate: Callable[[int, int, bool], int]) -> MicroBatchPlan:
    """(rows per micro-batch, accumulation, checkpointed layers, offload) for a step of `rows_per_step` rows of
    up to `max_length` tokens; see the module docstring for the order of preference."""
    if rows_per_step < 1 or configured_batch < 1 or rows_per_step % configured_batch:
        raise ValueError(f"rows_per_step={rows_per_step} must be a positive multiple of configured_batch={configured_batch}")

    def plan(bs: int, ckpt: int, offload: bool, why: str) -> MicroBatchPlan:
        need = estimate(bs * max_length, ckpt, offload)
        return MicroBatchPlan(bs, rows_per_step // bs, ckpt, offload, need, need <= budget_bytes,
                              f"{why}; estimated peak {need / GIB:.1f} GiB, budget {budget_bytes / GIB:.1f} GiB")

    sizes = divisors_desc(rows_per_step)
    for bs in [b for b in sizes if b >= configured_batch]:
        p = plan(bs, 0, False, f"{bs} rows x {rows_per_step // bs} accumulation, no checkpointing")
        if p.fits:
            return p
    for ckpt in checkpoint_counts(layers):
        p = plan(configured_batch, ckpt, False, f"{configured_batch} rows x {rows_per_step // configured_batch} "
                                                f"accumulation, {ckpt} of {layers} layers checkpointed")
        if p.fits:
            return p
    for bs in [b for b in sizes if b < configured_batch]:
        p = plan(bs, 0, False, f"{bs} rows x {rows_per_step // bs} accumulation, no checkpointing")
        if p.fits:
            return p
    for offload in (False, True):
        for bs in sizes:
            what = "all layers checkpointed" + (", their inputs offloaded to host memory" if offload else "")
            p = plan(bs, layers, offload, f"{bs} rows x {rows_per_step // bs} accumulation, {what}")
            if p.fits:
                return p
    return plan(1, layers, True, "nothing fits: 1 row per micro-batch, all layers checkpointed and offloaded")
