"""The memory plan of a pack (issue 24): how many rows of each job one packed forward takes.

A job's solo plan picks its micro-batch for ONE job's activations (medchat.speed.apply.micro_batch_plan). A pack
runs every job's micro-batch in one forward: the base weights once, but every job's adapters (with their
gradients and AdamW state) and N jobs' activations. `choose_rows_per_job` picks the rows per job R, a divisor of
the job's rows per optimizer step (largest first), whose forward of N x R rows fits the budget; each job then
accumulates rows_per_step / R micro-batches, so its effective batch, its optimizer steps and (the sampler's
permutation cut into consecutive chunks) the rows of each of its steps are its solo run's.

The packed loop has no gradient checkpointing: where even R = 1 does not fit, R stays 1 with a warning naming
the estimate and the budget (and the plan records `fits: false`).

`plan_pack_rows` applies it where the solo plan's auto micro-batch would (a CUDA GPU, a known budget,
trainer.micro_batch=auto); elsewhere each job keeps its solo plan's micro-batch. Pure functions of their
arguments (the memory model is medchat.memory's): tests/test_pack_memory.py checks them on a GPU-shaped machine.
`pack_rows` asks it with a pack's members (their plans, configs and the architecture's config.json), and
`pack_record` is what each job's plan.json records of the choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from medchat import memory
from medchat.hardware import Hardware
from medchat.speed.microbatch import divisors_desc

log = logging.getLogger(__name__)
GIB = 2**30


@dataclass(frozen=True)
class JobAdapter:
    """What of one job changes the pack's memory: its adapter's size and the dropout copies it keeps."""

    r: int
    targets: tuple[str, ...]
    lora_dropout: float


@dataclass(frozen=True)
class PackRows:
    rows_per_job: int
    accumulation: int
    estimate_bytes: int | None  # None: not estimated (no GPU or no budget)
    budget_bytes: int | None
    fits: bool | None
    reason: str

    def to_dict(self) -> dict:
        """What plan.json's `pack` section records."""
        gib = (lambda b: None if b is None else round(b / GIB, 2))
        return {"rows_per_job": self.rows_per_job, "accumulation": self.accumulation,
                "estimate_gib": gib(self.estimate_bytes), "budget_gib": gib(self.budget_bytes), "fits": self.fits,
                "reason": self.reason}


def pack_peak_bytes(arch: memory.Arch, jobs: list[JobAdapter], *, tokens_per_job: int, quant_mode: str,
                    liger: bool, attention: str, sequence: int) -> int:
    """medchat.memory's estimated peak of one packed forward/backward of `tokens_per_job` tokens per job, no layer
    checkpointed: each job's solo estimate at its tokens (its adapters, its activations, its share of the
    per-token buffers), with the parts every solo estimate counts once more than the pack holds (the base weights
    and the fixed buffers: the estimate at zero tokens without an adapter) counted once."""

    def peak(tokens: int, r: int, targets, dropout: float) -> int:
        return memory.estimate_peak_bytes(arch, tokens=tokens, checkpointed_layers=0, quant_mode=quant_mode,
                                          lora_r=r, lora_targets=list(targets), lora_dropout=dropout, liger=liger,
                                          attention=attention, sequence=sequence)

    shared = peak(0, 0, [], 0.0)
    return sum(peak(tokens_per_job, j.r, j.targets, j.lora_dropout) for j in jobs) - (len(jobs) - 1) * shared


def choose_rows_per_job(*, jobs: int, rows_per_step: int, max_length: int, budget_bytes: int,
                        estimate: Callable[[int], int]) -> PackRows:
    """The largest divisor R of `rows_per_step` whose packed forward (estimate(R x max_length tokens per job) ->
    bytes, every job's share included) fits `budget_bytes`; else R = 1, not fitting, with a warning."""
    if rows_per_step < 1:
        raise ValueError(f"rows_per_step={rows_per_step} must be positive")
    for rows in divisors_desc(rows_per_step):
        need = estimate(rows * max_length)
        if need <= budget_bytes:
            return PackRows(rows, rows_per_step // rows, need, budget_bytes, True,
                            f"{jobs} jobs x {rows} rows x {rows_per_step // rows} accumulation per forward; estimated "
                            f"peak {need / GIB:.1f} GiB, budget {budget_bytes / GIB:.1f} GiB")
    need = estimate(max_length)
    reason = (f"nothing fits: {jobs} jobs x 1 row x {rows_per_step} accumulation per forward, estimated peak "
              f"{need / GIB:.1f} GiB over the {budget_bytes / GIB:.1f} GiB budget (the packed loop has no "
              "gradient checkpointing)")
    log.warning("pack memory plan: %s: the step will likely run out of memory; pack fewer jobs (launcher.pack) or "
                "lower trainer.max_length", reason)
    return PackRows(1, rows_per_step, need, budget_bytes, False, reason)


def plan_pack_rows(jobs: list[JobAdapter], *, solo_rows: int, rows_per_step: int, trainer_cfg, quant_mode: str,
                   hw: Hardware, arch: memory.Arch, liger: bool, attention: str) -> PackRows:
    """Rows per job and accumulation for the pack. Where the solo plan's auto micro-batch applies (a CUDA GPU, a
    known memory budget, trainer.micro_batch=auto): choose_rows_per_job over the pack's estimate. Elsewhere each
    job keeps its solo micro-batch `solo_rows` (on a GPU with a budget, its estimate is still recorded, and a
    warning given when it does not fit)."""
    t = trainer_cfg
    budget = memory.memory_budget_bytes(t.memory_budget_gib, hw.gpu_memory_bytes)
    solo = f"each job's solo micro-batch, {solo_rows} rows x {rows_per_step // solo_rows} accumulation"
    if not hw.cuda or budget is None:
        why = "no GPU" if not hw.cuda else "no memory budget known"
        return PackRows(solo_rows, rows_per_step // solo_rows, None, budget, None, f"{solo} ({why})")

    def estimate(tokens_per_job: int) -> int:
        return pack_peak_bytes(arch, jobs, tokens_per_job=tokens_per_job, quant_mode=quant_mode, liger=liger,
                               attention=attention, sequence=t.max_length)

    if str(t.micro_batch).lower() != "auto":
        need = estimate(solo_rows * t.max_length)
        fits = need <= budget
        if not fits:
            log.warning("pack memory plan: trainer.micro_batch=%s keeps %d rows per job; estimated peak %.1f GiB over "
                        "the %.1f GiB budget", t.micro_batch, solo_rows, need / GIB, budget / GIB)
        return PackRows(solo_rows, rows_per_step // solo_rows, need, budget, fits,
                        f"{solo} (trainer.micro_batch={t.micro_batch}); estimated peak {need / GIB:.1f} GiB, "
                        f"budget {budget / GIB:.1f} GiB")
    return choose_rows_per_job(jobs=len(jobs), rows_per_step=rows_per_step, max_length=t.max_length,
                               budget_bytes=budget, estimate=estimate)


def pack_rows(members) -> PackRows:
    """Rows per job and accumulation for one packed forward of `members` (pack_train.Member: each job's config,
    solo run plan and TrainingArguments): on a GPU with a known budget and trainer.micro_batch=auto, the largest
    split of a job's rows per optimizer step whose forward over every job fits; elsewhere each job's solo
    micro-batch. The jobs share their batch shape (pack_checks.check_jobs) and a solo
    plan keeps the config's rows per step, so one R serves every job."""
    from medchat import modeling

    first = members[0]
    steps = {m.args.per_device_train_batch_size * m.args.gradient_accumulation_steps for m in members}
    if len(steps) != 1:
        from medchat.config import ConfigError

        raise ConfigError(f"the pack's jobs take different rows per optimizer step ({sorted(steps)}): they cannot "
                          "share one forward split")
    plan = first.plan
    # the architecture's shape numbers (config.json only, read again: the run plan keeps no Arch)
    arch = memory.Arch.from_config(modeling.model_config(first.cfg.model, plan.model.path))
    # Jobs sharing their targets run every adapted projection through StackedLoRA (equal rows per job), which
    # keeps no dropped copy of the input; with differing targets some projections take the per-job loop, which does
    same_targets = len({tuple(m.plan.target_modules) for m in members}) == 1
    jobs = [JobAdapter(int(m.cfg.lora.r), tuple(m.plan.target_modules),
                       0.0 if same_targets else float(m.cfg.lora.lora_dropout)) for m in members]
    return plan_pack_rows(jobs, solo_rows=first.args.per_device_train_batch_size, rows_per_step=steps.pop(),
                          trainer_cfg=first.cfg.trainer, quant_mode=first.cfg.quant.mode, hw=plan.hardware,
                          arch=arch, liger=plan.liger, attention=plan.model.train_attention)


def pack_record(members, rows: PackRows, solo: list[tuple[int, int]]) -> dict:
    """What the pack runs per forward, recorded in each job's plan.json (`pack`): the rows per job and accumulation
    the memory plan chose (each job's rows per optimizer step are its solo run's), its estimate, budget and
    reason, and each job's solo split (rows, accumulation) for comparison."""
    return {"jobs": len(members), **rows.to_dict(), "rows_per_forward": len(members) * rows.rows_per_job,
            "solo_split": [list(s) for s in solo]}
