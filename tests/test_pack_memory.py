"""The pack's memory plan (medchat.sweeps.pack_memory) on a GPU-shaped machine, no GPU: 4 jobs of the Mistral-7B
shape (r 8/16, 4 x 1,024 rows per optimizer step), their solo plans resolved by medchat.plan as a solo run would."""

from __future__ import annotations

import logging

import pytest

from conftest import compose

H200 = dict(cuda=True, gpus=1, bf16=True, gpu_memory_bytes=141 * 10**9, liger=False)
GIB = 2**30
RANKS = (8, 16, 8, 16)


def mistral(tmp_path, *overrides):
    """The mistral7b preset on a Mistral-7B-shaped config written to tmp_path (no weights anywhere)."""
    from transformers import MistralConfig

    if not (tmp_path / "config.json").exists():
        MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, sliding_window=None).save_pretrained(tmp_path)
    return compose("model=mistral7b", "quant=nf4", f"model.name_or_path={tmp_path}", "trainer.max_length=1024",
                   "trainer.per_device_train_batch_size=4", "trainer.gradient_accumulation_steps=1", *overrides)


def sweep(tmp_path, budget, hw_kwargs=H200, *extra):
    """Each job's config and solo run plan, and the pack's plan from them (as pack_memory.pack_rows builds it)."""
    from transformers import MistralConfig

    from medchat import memory, plan as run_plan
    from medchat.hardware import Hardware
    from medchat.sweeps.pack_memory import JobAdapter, plan_pack_rows

    hw = Hardware(**hw_kwargs)
    cfgs = [mistral(tmp_path, f"lora.r={r}", f"lora.lora_alpha={2 * r}", f"trainer.memory_budget_gib={budget}", *extra)
            for r in RANKS]
    plans = [run_plan.resolve(c, hw) for c in cfgs]
    arch = memory.Arch.from_config(MistralConfig.from_pretrained(tmp_path))
    # dropout 0: jobs sharing their targets run through StackedLoRA, which keeps no dropped copies (as pack_rows says)
    jobs = [JobAdapter(int(c.lora.r), tuple(p.target_modules), 0.0) for c, p in zip(cfgs, plans)]
    solo = plans[0].batch
    rows = plan_pack_rows(jobs, solo_rows=solo.per_device_train_batch_size,
                          rows_per_step=solo.per_device_train_batch_size * solo.gradient_accumulation_steps,
                          trainer_cfg=cfgs[0].trainer, quant_mode="nf4", hw=hw, arch=arch, liger=plans[0].liger,
                          attention=plans[0].model.train_attention)
    return cfgs, plans, arch, rows


def reference_peak(arch, cfgs, plans, rows_per_job: int) -> int:
    """An independent route through the memory model: ONE solo estimate of a forward over every job's tokens
    (4 x rows x 1,024) with job 0's adapter, plus the other jobs' adapters at 16 bytes per parameter (fp32 weight,
    gradient and AdamW's two moments). All jobs share their targets, so every projection runs through StackedLoRA,
    which keeps no dropped copy of the input: the estimate of dropout 0, whatever the jobs' dropout."""
    from medchat import memory

    c, p = cfgs[0], plans[0]
    one = memory.estimate_peak_bytes(arch, tokens=len(cfgs) * rows_per_job * 1024, checkpointed_layers=0,
                                     quant_mode="nf4", lora_r=int(c.lora.r), lora_targets=list(p.target_modules),
                                     lora_dropout=0.0, liger=False,
                                     attention=p.model.train_attention, sequence=1024)
    others = sum(arch.layers * arch.lora_params_per_layer(int(c.lora.r), list(p.target_modules)) * 16 for c in cfgs[1:])
    return one + others


@pytest.mark.parametrize("budget, expected", [(40, (1, 4)), (70, (2, 2)), (100, (4, 1))])
def test_rows_per_job_fit_the_budget_with_accumulation(tmp_path, budget, expected):
    """The reference's peaks for 4 jobs (StackedLoRA: no dropped copies kept) are 97.0 GiB at 4 rows per job,
    51.8 at 2 and 29.2 at 1: 40 GiB takes 1 row x 4 accumulation, 70 GiB 2 x 2, 100 GiB the solo 4 x 1. Each job's
    rows per optimizer step stay 4."""
    cfgs, plans, arch, rows = sweep(tmp_path, budget)
    # each solo plan takes all 4 rows in one micro-batch: one job's activations fit even 40 GiB
    assert all((p.batch.per_device_train_batch_size, p.batch.gradient_accumulation_steps) == (4, 1) for p in plans)
    assert not any(p.checkpointing.enabled for p in plans)
    peaks = {r: reference_peak(arch, cfgs, plans, r) for r in (4, 2, 1)}
    largest = next(r for r in (4, 2, 1) if peaks[r] <= budget * GIB)
    assert largest == expected[0], {r: v / GIB for r, v in peaks.items()}
    assert (rows.rows_per_job, rows.accumulation, rows.fits) == (*expected, True)
    assert rows.rows_per_job * rows.accumulation == 4
    assert rows.estimate_bytes == pytest.approx(peaks[largest], abs=16)  # int rounding of the per-job estimates
    d = rows.to_dict()  # what plan.json records
    assert (d["rows_per_job"], d["accumulation"], d["budget_gib"], d["fits"]) == (*expected, float(budget), True)
    assert d["estimate_gib"] == pytest.approx(peaks[largest] / GIB, abs=0.01)
    assert f"4 jobs x {expected[0]} rows x {expected[1]} accumulation" in d["reason"]


def test_nothing_fits_keeps_one_row_and_warns_with_the_numbers(tmp_path):
    from medchat.sweeps import pack_memory

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    pack_memory.log.addHandler(handler)
    try:
        cfgs, plans, arch, rows = sweep(tmp_path, 12)
    finally:
        pack_memory.log.removeHandler(handler)
    need = reference_peak(arch, cfgs, plans, 1)
    assert need > 12 * GIB
    assert (rows.rows_per_job, rows.accumulation, rows.fits) == (1, 4, False)
    assert rows.estimate_bytes == pytest.approx(need, abs=16)
    assert any(f"{need / GIB:.1f} GiB" in m and "12.0 GiB budget" in m and "no gradient checkpointing" in m
               for m in seen), seen


def test_the_plan_applies_only_where_the_solo_auto_micro_batch_does(tmp_path):
    # CPU: the solo micro-batch, nothing estimated
    _, plans, _, rows = sweep(tmp_path, 70, {})
    assert (rows.rows_per_job, rows.accumulation, rows.estimate_bytes, rows.fits) == (4, 1, None, None)
    assert "no GPU" in rows.reason
    # trainer.micro_batch=fixed: the config's split stands; the estimate is recorded and says it does not fit
    cfgs, plans, arch, rows = sweep(tmp_path, 70, H200, "trainer.micro_batch=fixed")
    assert (rows.rows_per_job, rows.accumulation, rows.fits) == (4, 1, False)
    assert rows.estimate_bytes == pytest.approx(reference_peak(arch, cfgs, plans, 4), abs=16)


def test_pack_train_asks_the_plan_with_each_members_rows_per_step_and_adapter(tmp_path):
    """pack_memory.pack_rows (what train_pack calls) on members whose solo plans were resolved for the GPU-shaped
    machine: the members' split (2 x 2 here) counts as one step of 4 rows, and the pack's split is chosen afresh
    from the pack's estimate (at 200 GiB the reference fits 4 rows per job: 4 x 1)."""
    from types import SimpleNamespace

    from medchat.sweeps.pack_memory import pack_rows
    from medchat.sweeps.pack_train import Member

    cfgs, plans, arch, _ = sweep(tmp_path, 200)
    members = [Member(i, c, tmp_path / str(i), plan=p,
                      args=SimpleNamespace(per_device_train_batch_size=2, gradient_accumulation_steps=2))
               for i, (c, p) in enumerate(zip(cfgs, plans))]
    rows = pack_rows(members)
    assert (rows.rows_per_job, rows.accumulation, rows.fits) == (4, 1, True)
    assert rows.estimate_bytes == pytest.approx(reference_peak(arch, cfgs, plans, 4), abs=16)
