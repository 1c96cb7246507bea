"""Packed sweeps on a GPU (issue 24): a 4-job sweep trained packed in one process against the same 4 jobs one
after another, on one GPU, in one run.

    python bench/packed_sweep.py --shape mistral7b --out results/packed_7b.json
    python bench/packed_sweep.py --shape qwen2_0_5b --out results/packed_qwen.json
    python bench/packed_sweep.py --shape tiny --steps 2 --warmup 1               # CPU smoke

The sweep is issue 24's: lora.r 8/16 (alpha 2r) x trainer.learning_rate 1e-4/2e-4, everything else medchat's
defaults (NF4, LoRA on all 7 projections, dropout 0.05, 4 packed rows of up to 1,024 tokens a micro-batch), on
random weights of the shape (bench/qlora_throughput.py builds and pre-quantizes them) and rows with the real
iCliniq prompt/answer lengths.

- `sequential`: each job through medchat.pipeline.fit (what `train.py` runs: TRL's trainer, the plan's speed
  levers), one after another, each loading the base again.
- `packed`: the four jobs through medchat.sweeps.pack_train's own step (what `launcher.pack=4` runs): the base
  loaded once, one forward over all jobs' micro-batches, each job's LoRA on its own rows, per-job optimizers.
  Rows per job a forward are what the pack's memory plan picks for the GPU's budget (medchat.sweeps.pack_memory;
  `--pack-rows R` forces R rows with 4/R accumulation: the same optimizer step).

Reported: each side's aggregate real (non-pad) tokens/s over the timed optimizer steps (after warm-up steps
that absorb kernel compilation), the wall time of the whole sweep including model loading, and peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

import qlora_throughput as qt  # noqa: E402

GIB = 2**30
JOBS = [(8, 1e-4), (8, 2e-4), (16, 1e-4), (16, 2e-4)]  # (lora.r, trainer.learning_rate); alpha = 2r


def job_overrides(r: int, lr: float) -> list[str]:
    return [f"lora.r={r}", f"lora.lora_alpha={2 * r}", f"trainer.learning_rate={lr}"]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / GIB, 2) if torch.cuda.is_available() else None


def sequential(model_dir: Path, ds, work: Path, a) -> dict:
    """The four jobs as four medchat runs, one after another (timed steps per job from qlora_throughput's timer)."""
    jobs, t_all = [], time.time()
    for r, lr in JOBS:
        reset_peak()
        timer = qt.timer_callback(a.warmup, a.steps, None)
        t0 = time.time()
        overrides = qt.SHAPE_OVERRIDES.get(a.shape, []) + job_overrides(r, lr) + [f"trainer.max_steps={a.warmup + a.steps}"]
        metrics, cfg, info = qt.medchat_fit(f"solo_r{r}_lr{lr}", overrides, model_dir, ds, work, timer)
        jobs.append({"r": r, "lr": lr, **timer.result(), "final_loss": metrics["train_loss"],
                     "seconds": round(time.time() - t0, 1), "peak_gib": peak_gib(), "micro_batch": info["micro_batch"],
                     "fused_lora_projections": info["fused_lora_projections"], "optim": info["optim"],
                     "attn_implementation": info["attn_implementation"]})
        qt.say(json.dumps(jobs[-1]))
    tokens = sum(j["real_tokens"] for j in jobs)
    seconds = sum(j["timed_seconds"] for j in jobs)
    return {"jobs": jobs, "tokens_per_s": round(tokens / seconds, 1), "real_tokens": tokens,
            "timed_seconds": round(seconds, 3), "wall_seconds": round(time.time() - t_all, 1),
            "peak_gib": max((j["peak_gib"] or 0) for j in jobs) or None}


def packed(model_dir: Path, ds, work: Path, a) -> dict:
    """The four jobs in one process through pack_train's packed_optimizer_step."""
    from medchat import modeling
    from medchat.stages import stage_for
    from medchat.sweeps.pack_checks import eager_resolve
    from medchat.sweeps.pack_data import Schedule, collator, optimizer_steps, prepare_dataset
    from medchat.sweeps.pack_train import Member, build_optimizer, packed_optimizer_step
    from medchat.sweeps.packed import PackedJob, pack_model

    reset_peak()
    t_all = time.time()
    steps = a.warmup + a.steps + (2 if a.profile else 0)  # the schedule's length; the timed loop runs warmup + steps
    rows = [] if a.pack_rows is None else [f"trainer.per_device_train_batch_size={a.pack_rows}",
                                           f"trainer.gradient_accumulation_steps={4 // a.pack_rows}"]
    members = []
    for j, (r, lr) in enumerate(JOBS):
        cpu = [] if torch.cuda.is_available() else ["model.dtype=float32"]
        cfg = qt.compose(qt.COMMON + [f"model.name_or_path={model_dir}", "model.chat_template=null"] + cpu
                         + qt.SHAPE_OVERRIDES.get(a.shape, []) + job_overrides(r, lr) + rows
                         + [f"trainer.max_steps={steps}"])
        stage = stage_for(cfg.stage)
        m = Member(j, cfg, work / "runs" / f"packed_{j}")
        m.plan = stage.plan(eager_resolve(cfg), cfg.model, cfg.dataset)
        m.args = stage.trainer_config(cfg.trainer, cfg.tracker, m.run_dir, m.plan)
        members.append(m)
    first = members[0]
    if a.pack_rows is None:  # what launcher.pack's process chooses (medchat.sweeps.pack_memory)
        from medchat.sweeps.pack_memory import pack_rows

        chosen = pack_rows(members)
        for m in members:
            m.args.per_device_train_batch_size = chosen.rows_per_job
            m.args.gradient_accumulation_steps = chosen.accumulation
        qt.say(f"pack rows: {chosen.to_dict()}")
    tokenizer = modeling.load_tokenizer(first.cfg.model)
    train_ds = prepare_dataset(ds, tokenizer, first.args, "train")
    collate = collator(tokenizer, first.args)
    model = modeling.load_model(first.plan.model)
    jobs = [PackedJob(r=r, lora_alpha=2 * r, lora_dropout=float(first.cfg.lora.lora_dropout),
                      target_modules=tuple(first.plan.target_modules), learning_rate=lr,
                      weight_decay=float(first.args.weight_decay), max_grad_norm=float(first.args.max_grad_norm),
                      lr_scheduler_type=str(getattr(first.args.lr_scheduler_type, "value", first.args.lr_scheduler_type)),
                      warmup_steps=first.args.get_warmup_steps(steps), seed=int(first.args.seed)) for r, lr in JOBS]
    pack = pack_model(model, jobs)
    peak_loaded = peak_gib()
    params = {m.index: pack.params[m.index] for m in members}
    for m in members:
        m.max_steps = steps
        m.optimizer, m.scheduler = build_optimizer(m, params[m.index], steps)
    device = next(p for ps in pack.params for p in ps).device
    precision = first.plan.precision

    def autocast():
        if precision in ("bf16", "fp16"):
            return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        import contextlib

        return contextlib.nullcontext()

    iterators = [optimizer_steps(train_ds, collate, m.args, Schedule.of(len(train_ds), m.args)) for m in members]
    loaded = time.time() - t_all
    marks, tokens, losses = [], 0, []
    for step in range(a.warmup + a.steps):
        batches = {m.index: next(iterators[m.index])[1] for m in members}
        loss = packed_optimizer_step(model, pack.ctx, members, batches, params, tokenizer.pad_token_id, device, autocast)
        sync()
        if step == 0:
            peak_first = peak_gib()
        if step >= a.warmup:
            tokens += sum(b["real_tokens"] for bs in batches.values() for b in bs)
        marks.append(time.perf_counter())
        losses.append(loss)
    timed = marks[-1] - marks[a.warmup - 1]
    if a.profile and torch.cuda.is_available():  # where the packed step's GPU time goes: 2 more steps, profiled
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t0 = time.perf_counter()
            for _ in range(2):
                batches = {m.index: next(iterators[m.index])[1] for m in members}
                packed_optimizer_step(model, pack.ctx, members, batches, params, tokenizer.pad_token_id, device,
                                      autocast)
            sync()
        qt.write_profile(prof, time.perf_counter() - t0, 2, Path(a.profile))
    out = {"tokens_per_s": round(tokens / timed, 1), "real_tokens": tokens, "timed_seconds": round(timed, 3),
           "wall_seconds": round(time.time() - t_all, 1), "load_seconds": round(loaded, 1), "peak_gib": peak_gib(),
           "peak_after_load_gib": peak_loaded, "peak_after_first_step_gib": peak_first,
           "rows_per_job": first.args.per_device_train_batch_size,
           "micro_batch": f"{first.args.per_device_train_batch_size} rows x {len(JOBS)} jobs a forward, "
                          f"accumulation {first.args.gradient_accumulation_steps}",
           "attn_implementation": model.config._attn_implementation, "optim": str(first.args.optim),
           "final_losses": losses[-1]}
    del pack, model
    reset_peak()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="mistral7b", choices=sorted(qt.SHAPES))
    ap.add_argument("--work", default="/tmp/medchat-bench")
    ap.add_argument("--steps", type=int, default=6, help="timed optimizer steps per job")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pack-rows", type=int, default=None, choices=(1, 2, 4),
                    help="rows per job a packed micro-batch (accumulation 4/R); default: what launcher.pack's "
                         "memory plan chooses (medchat.sweeps.pack_memory)")
    ap.add_argument("--sides", default="packed,sequential")
    ap.add_argument("--out", default=None)
    ap.add_argument("--profile", default=None, help="folder for profile.md of 2 packed steps after the timed ones (GPU)")
    ap.add_argument("--masks", default=None, choices=("bernoulli", "native"),
                    help="how the packed side draws its dropout masks (medchat.sweeps.stacked_lora.MASKS; default: "
                         "medchat's)")
    a = ap.parse_args()
    if a.masks:
        from medchat.sweeps import stacked_lora

        stacked_lora.MASKS = a.masks
    work = Path(a.work)
    model_dir = qt.prepare_model(work, a.shape)
    from transformers import AutoConfig

    ds = qt.rows(ROOT / "bench/icliniq_lengths.json", AutoConfig.from_pretrained(model_dir).vocab_size)
    from medchat.sweeps import stacked_lora

    report = {"command": " ".join(sys.argv), "versions": qt.versions(), "shape": a.shape, "jobs": JOBS,
              "masks": stacked_lora.MASKS}
    for side in a.sides.split(","):
        try:
            report[side] = (packed if side == "packed" else sequential)(model_dir, ds, work, a)
        except Exception as e:  # the other side still runs; the error is part of the record
            import traceback

            traceback.print_exc()
            report[side] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
            reset_peak()
        qt.say(f"{side}: {json.dumps(report[side])}")
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    p, s = report.get("packed", {}), report.get("sequential", {})
    if "tokens_per_s" in p and "tokens_per_s" in s:
        qt.say(f"{a.shape}: packed {p['tokens_per_s']:.0f} tokens/s vs sequential {s['tokens_per_s']:.0f}: "
               f"{p['tokens_per_s'] / s['tokens_per_s']:.2f}x (steps); whole sweep {s['wall_seconds']:.0f} s -> "
               f"{p['wall_seconds']:.0f} s; peak {p['peak_gib']} vs {s['peak_gib']} GiB")


if __name__ == "__main__":
    main()
