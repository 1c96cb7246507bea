"""Several sweep jobs trained in one process on one shared base, each as its solo `train.py` run would train it
(issue 24; for each group medchat.sweeps.grouping made, launcher.pack=N starts the packed process,
`python -m medchat.sweeps.pack_process SPEC.json`, which composes each job's config and calls train_pack).

Top to bottom, `train_pack(cfgs, run_dirs)` is pipeline.train for N jobs:

1. every job's config checked as train() checks it (check_keys, validate, the stage's check, the run plan), and
   the jobs checked to share everything but adapter-side keys, before any weights load (medchat.sweeps.pack_checks);
2. each job's run dir claimed (medchat.attempt: a done run refused, a checkpoint found to resume);
3. the tokenizer and the data once (the jobs share dataset.* and trainer.max_length, so the same split and rows),
   each job's TRL config (stage.trainer_config: what its solo trainer would get) with the pack's split of its
   optimizer step (medchat.sweeps.pack_memory: on a GPU, the rows per job whose forward over all N jobs fits the
   memory budget; the rows per optimizer step stay the solo run's), and its run-dir record;
4. the base loaded (and quantized) once by medchat.modeling, wrapped by medchat.sweeps.packed.pack_model with one
   PackedJob per job (its own LoRA init, replaying its solo PEFT init from its seed);
5. the steps: each job's micro-batches in its solo order (TRL's own dataset preparation and collator, the
   sampler accelerate seeds with the job's trainer.seed), one forward over all jobs' rows, each job's loss
   normalised over the trained tokens of its whole accumulated step (HF's num_items_in_batch), then per job:
   clipping, its optimizer (the one its plan picks, built by transformers), its scheduler;
6. per job: held-out loss before and after, checkpoints every trainer.save_steps, its adapter and tokenizer,
   metrics.json, status, and its own W&B run.

A job whose loss turns NaN or inf fails alone (status failed, its W&B run failed); the others train on. SIGTERM
or SIGINT: every job finishes the step, saves a checkpoint and is left `interrupted` (medchat.preemption); a
killed process leaves each job at its last checkpoint, and the launcher's re-run resumes each from there.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from medchat.sweeps.pack_checks import check_jobs, eager_resolve, solo_compiles
from medchat.sweeps.pack_data import Schedule, collator, optimizer_steps, prepare_dataset
from medchat.sweeps.pack_memory import pack_record, pack_rows
from medchat.sweeps.pack_tracking import close_tensorboard, fail, log_scalars, open_tracker
from medchat.sweeps.pack_weights import (PackedHead, job_parameters, load_checkpoint, save_adapter,
                                         save_checkpoint)
from medchat.sweeps.packed import PackedJob, block_nlls, concat_rows, pack_model, step_jobs, to_device

log = logging.getLogger(__name__)
# Test hook: called after every packed optimizer step with the step number (tests send SIGTERM from it).
after_step = None


@dataclass
class Member:
    """One job of the pack and everything it owns."""

    index: int
    cfg: DictConfig
    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    wandb_run_id: str | None = None
    wandb_name: str | None = None
    plan: object = None
    args: object = None
    attempt: object = None
    tracker: object = None
    plain: dict | None = None
    optimizer: object = None
    scheduler: object = None
    step: int = 0
    losses: list = field(default_factory=list)  # (step, loss) per optimizer step
    log_history: list = field(default_factory=list)
    tokens: int = 0
    tokens_at_start: int = 0
    before: dict = field(default_factory=dict)
    failed: str | None = None
    done: bool = False
    max_steps: int = 0
    grad_norm: float | None = None
    tensorboard: object = None  # the job's SummaryWriter under tracker=tensorboard (opened at its first scalar)

    @property
    def active(self) -> bool:
        return self.failed is None and not self.done


# ----- 5. the packed loop -------------------------------------------------------------------------------

def build_optimizer(member: Member, params: list, max_steps: int):
    """The optimizer and scheduler the job's solo Trainer creates: transformers' class and kwargs for its
    `optim` (adamw_torch on CPU, fused AdamW on a GPU: medchat.plan), weight decay on every trained weight (HF
    exempts biases and norms, which LoRA does not train), get_scheduler with its warmup over max_steps."""
    from transformers import Trainer, get_scheduler

    args = member.args
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    optimizer = cls([{"params": params, "weight_decay": args.weight_decay}], **kwargs)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(max_steps),
                              num_training_steps=max_steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    return optimizer, scheduler


def eval_due(member: Member, schedule: Schedule) -> bool:
    """Whether the job's solo Trainer scores the held-out rows after this step: every eval_steps optimizer steps
    (eval_strategy=steps) or at each epoch's end (epoch); the final evaluation after training comes on top, as in
    pipeline.fit."""
    strategy = getattr(member.args.eval_strategy, "value", member.args.eval_strategy)
    if strategy == "steps" and member.args.eval_steps:
        return member.step % int(member.args.eval_steps) == 0
    if strategy == "epoch":
        return member.step % schedule.steps_per_epoch == 0 or member.step == member.max_steps
    return False


def held_out_loss(model, ctx, eval_batches: list[dict], members: list[Member], pad_token_id: int, device,
                  autocast) -> dict[int, tuple[float, int]]:
    """Token-weighted held-out NLL per job (medchat's one perplexity definition, sft_trainer.TokenWeightedEvalLoss):
    each eval batch repeated once per job in one forward, each copy scored with its job's adapter."""
    totals = {m.index: [0.0, 0] for m in members}
    model.eval()
    with torch.no_grad():
        for batch in eval_batches:
            host, counts = concat_rows([batch] * len(members), pad_token_id)
            merged = {k: to_device(v, device) for k, v in host.items()}
            with ctx.packed(_rows_for_all(ctx, members, counts)), autocast():
                scored = block_nlls(model, merged, counts, host["labels"])
            for m, job in zip(members, scored):
                if job is not None:
                    totals[m.index][0] += float(job[0])
                    totals[m.index][1] += job[1]
    return {i: (t / c if c else float("nan"), c) for i, (t, c) in totals.items()}


def _rows_for_all(ctx, members: list[Member], counts: list[int]) -> list[int]:
    """Rows per job of the whole pack (ctx.jobs) from the rows of `members` (jobs not in it: none)."""
    rows = [0] * len(ctx.jobs)
    for m, n in zip(members, counts):
        rows[m.index] = n
    return rows


def packed_optimizer_step(model, ctx, members: list[Member], steps: dict[int, list[dict]], params: dict,
                          pad_token_id: int, device, autocast) -> dict[int, float]:
    """One optimizer step of every job in `steps` (job -> its micro-batches) through sweeps.packed.step_jobs, with
    each member's own optimizer, scheduler and trainer.max_grad_norm; records each clipped job's gradient norm.
    -> the step's loss per job (NaN for a job whose loss was not finite: its gradients dropped, no step)."""
    losses, norms = step_jobs(model, ctx, steps, params, {j: members[j].optimizer for j in steps},
                              {j: members[j].scheduler for j in steps},
                              {j: members[j].args.max_grad_norm for j in steps}, pad_token_id, device, autocast)
    for j, norm in norms.items():
        members[j].grad_norm = norm
    return losses


# ----- the whole pack -----------------------------------------------------------------------------------

def train_pack(cfgs: list[DictConfig], run_dirs: list[str | Path], *, overrides: list[list[str]] | None = None,
               wandb_ids: list[str | None] | None = None, wandb_names: list[str | None] | None = None) -> list[dict]:
    """Train every job of `cfgs` (composed configs, one per run dir) in one process; -> each job's metrics
    (failed jobs: {"failed": reason}). Each job's run dir ends as its solo train.py run's would."""
    from medchat import modeling, training
    from medchat import plan as run_plan
    from medchat.attempt import Attempt
    from medchat.pipeline import token_count
    from medchat.preemption import StopRequest
    from medchat.stages import stage_for

    n = len(cfgs)
    members = [Member(i, cfg, Path(run_dirs[i]), list((overrides or [[]] * n)[i]),
                      (wandb_ids or [None] * n)[i], (wandb_names or [None] * n)[i]) for i, cfg in enumerate(cfgs)]
    # 1. checks without weights, every job, then the run plan per job
    check_jobs(cfgs)
    stage = stage_for(cfgs[0].stage)
    slower = solo_compiles(cfgs[0])  # the jobs differ only in adapter-side keys: one answer for all
    if slower:
        log.warning(slower)
    for m in members:
        m.plan = stage.plan(eager_resolve(m.cfg), m.cfg.model, m.cfg.dataset)
        log.info("job %d: %s", m.index, m.plan.describe())
    # 2. each run dir claimed (a done run refused; the checkpoint to resume found)
    for m in members:
        m.attempt = Attempt(m.run_dir, m.cfg.trainer.resume, True)
        m.attempt.claim(training.checkpoints_dir(m.run_dir))
    # 3. tokenizer and data once; each job's TRL config and record
    first = members[0]
    tokenizer = modeling.load_tokenizer(first.cfg.model)
    data = stage.data(first.cfg.dataset, first.cfg.trainer, tokenizer, run_plan.tokenized_cache_dir(first.run_dir))
    for m in members:
        m.plan = run_plan.with_data(m.plan, m.cfg, packs=stage.packs, train_rows=len(data.train),
                                    train_tokens=token_count(data.train),
                                    eval_rows=len(data.eval) if data.eval is not None else 0,
                                    eval_tokens=token_count(data.eval))
        m.args = stage.trainer_config(m.cfg.trainer, m.cfg.tracker, m.run_dir, m.plan)
        m.plain = OmegaConf.to_container(m.cfg, resolve=True)
    # the pack's split of each job's optimizer step, set before anything derives the data order from the args:
    # the sampler's permutation is cut into consecutive chunks, so any split of a step keeps the step's rows
    solo = [(m.args.per_device_train_batch_size, m.args.gradient_accumulation_steps) for m in members]
    rows = pack_rows(members)
    for m in members:
        m.args.per_device_train_batch_size = rows.rows_per_job
        m.args.gradient_accumulation_steps = rows.accumulation
    memory = pack_record(members, rows, solo)
    log.info("pack: %s", memory)
    for m in members:
        plan = {**m.plan.to_dict(), "pack": {**memory, "process_jobs": [str(x.run_dir) for x in members]}}
        m.attempt.record(OmegaConf.to_yaml(m.cfg, resolve=True), m.plain, data.split, data.tokenization, plan,
                         world_size=1, per_device_train_batch_size=m.args.per_device_train_batch_size,
                         gradient_accumulation_steps=m.args.gradient_accumulation_steps)
    stop = StopRequest().install()
    if any(m.cfg.tracker.backend == "wandb" for m in members):
        import wandb

        wandb.setup(settings=wandb.Settings(reinit="create_new"))  # one W&B run per job, all open at once
    try:
        for m in members:
            try:
                m.tracker = open_tracker(m, data.counts)
            except Exception as e:  # a job whose W&B run cannot start fails alone
                fail(m, e)
        return _train(members, data, tokenizer, memory, stop)
    finally:
        stop.uninstall()


def _train(members, data, tokenizer, memory, stop) -> list[dict]:
    """Steps 4 to 6 of train_pack for the claimed, recorded members: the model, the steps, the results."""
    # transformers (and medchat.preemption, which imports it) only here: importing this module stays light, and
    # the launcher's main() hides known-harmless import-time lines (medchat.console) before they are imported
    from transformers import set_seed

    from medchat import modeling, training
    from medchat.atomic import write_json
    from medchat.evaluation.perplexity import PERPLEXITY_DEFINITION
    from medchat.preemption import Interrupted

    first = members[0]
    plan = first.plan
    train_ds = prepare_dataset(data.train, tokenizer, first.args, "train")
    eval_ds = prepare_dataset(data.eval, tokenizer, first.args, "eval") if data.eval is not None else None
    collate = collator(tokenizer, first.args)
    schedule = Schedule.of(len(train_ds), first.args)
    for m in members:
        m.max_steps = Schedule.of(len(train_ds), m.args).max_steps
        m.grad_norm = None

    # 4. the base once, every job's adapter on it (LoRA init replayed from each job's seed)
    set_seed(first.args.seed)
    model = modeling.load_model(plan.model)
    jobs = [PackedJob(r=int(m.cfg.lora.r), lora_alpha=float(m.cfg.lora.lora_alpha),
                      lora_dropout=float(m.cfg.lora.lora_dropout), target_modules=tuple(m.plan.target_modules),
                      learning_rate=float(m.args.learning_rate), weight_decay=float(m.args.weight_decay),
                      max_grad_norm=float(m.args.max_grad_norm), lr_scheduler_type=str(m.args.lr_scheduler_type.value
                      if hasattr(m.args.lr_scheduler_type, "value") else m.args.lr_scheduler_type),
                      warmup_steps=m.args.get_warmup_steps(m.max_steps), seed=int(m.args.seed)) for m in members]
    pack = pack_model(model, jobs)
    owners = [m.index for m in members if m.cfg.lora.targets == "all_linear_lm_head"]
    head = None
    if owners:
        head = PackedHead(model.get_output_embeddings(), pack.ctx, owners)
        model.set_output_embeddings(head)
    device = next(p for ps in pack.params for p in ps).device
    params = {m.index: job_parameters(pack, head, m.index) for m in members}
    for m in members:
        m.optimizer, m.scheduler = build_optimizer(m, params[m.index], m.max_steps)
        if m.attempt.checkpoint and m.active:
            load_checkpoint(pack, head, m, pack.ctx, device, m.attempt.checkpoint)
    if plan.precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if plan.precision == "bf16" else torch.float16

        def autocast():
            return torch.autocast(device.type, dtype=dtype)
    else:
        from contextlib import nullcontext as autocast
    pad = tokenizer.pad_token_id
    eval_batches = []
    if eval_ds is not None:
        bs = first.args.per_device_eval_batch_size
        eval_batches = [collate([eval_ds[i] for i in range(s, min(s + bs, len(eval_ds)))])
                        for s in range(0, len(eval_ds), bs)]

    # held-out loss before training (a fresh start only, as a solo run)
    fresh = [m for m in members if m.active and not m.attempt.checkpoint]
    if eval_batches and fresh:
        for i, (loss, count) in held_out_loss(model, pack.ctx, eval_batches, fresh, pad, device, autocast).items():
            m = members[i]
            m.before = {"eval_loss_before": loss, "eval_before_loss": loss, "eval_before_scored_tokens": count}
            m.log_history.append({"eval_loss": loss, "step": 0})
            write_json(m.run_dir / "metrics_before.json", m.before)
            log_scalars(m, {"eval/loss": loss}, 0)

    # 5. the steps
    iterators = {m.index: optimizer_steps(train_ds, collate, m.args, Schedule.of(len(train_ds), m.args), m.step)
                 for m in members}
    started = time.time()
    while True:
        active = [m for m in members if m.active]
        if not active:
            break
        steps = {}
        for m in active:
            nxt = next(iterators[m.index], None)
            if nxt is None:
                m.done = True
            else:
                steps[m.index] = nxt[1]
        if not steps:
            break
        losses = packed_optimizer_step(model, pack.ctx, members, steps, params, pad, device, autocast)
        for j, loss in losses.items():
            m = members[j]
            if not math.isfinite(loss):
                fail(m, FloatingPointError(f"training loss is {loss} at step {m.step + 1}; the pack's other jobs "
                                            "went on without this one"))
                continue
            m.step += 1
            m.tokens += sum(b["real_tokens"] for b in steps[j])
            m.losses.append((m.step, loss))
            if m.step % m.args.logging_steps == 0 or m.step == m.max_steps:
                entry = {"loss": loss, "learning_rate": m.scheduler.get_last_lr()[0], "grad_norm": m.grad_norm,
                         "step": m.step, "num_input_tokens_seen": m.tokens}
                m.log_history.append(entry)
                log.info("job %d step %d/%d: loss %.4f", j, m.step, m.max_steps, loss)
                print(f"step {m.step}/{m.max_steps} ({100 * m.step // m.max_steps}%): loss {loss:.4f}, job {j}",
                      flush=True)
                log_scalars(m, {"train/loss": loss, "train/learning_rate": entry["learning_rate"],
                         "train/grad_norm": m.grad_norm}, m.step)
        # held-out loss during training where the job's solo Trainer would score it (after logging, before saving,
        # as Trainer._maybe_log_save_evaluate does), for all due jobs in one pass over the eval rows
        due = [members[j] for j in losses if members[j].active and eval_due(members[j], schedule)]
        if due and eval_batches:
            scored = held_out_loss(model, pack.ctx, eval_batches, due, pad, device, autocast)
            for m in due:
                loss, _ = scored[m.index]
                m.log_history.append({"eval_loss": loss, "step": m.step})
                print(f"held-out loss at step {m.step}/{m.max_steps}: {loss:.4f}, job {m.index}", flush=True)
                log_scalars(m, {"eval/loss": loss}, m.step)
        for j in losses:
            m = members[j]
            if m.active and (m.step % m.args.save_steps == 0 or (stop.requested and m.step < m.max_steps)):
                save_checkpoint(pack, head, m, pack.ctx, device)
        if after_step is not None:
            after_step(max(m.step for m in members))
        if stop.requested:
            for m in members:
                if m.active and m.step < m.max_steps:
                    checkpoint = training.checkpoints_dir(m.run_dir) / f"checkpoint-{m.step}"
                    m.attempt.ended(Interrupted(stop.signum, m.step, str(checkpoint)), m.tracker)
                    m.tracker, m.failed = None, "interrupted"
            if any(m.failed == "interrupted" for m in members):
                raise Interrupted(stop.signum, max(m.step for m in members), None)
    runtime = time.time() - started

    # 6. held-out loss after, adapters, metrics, status
    finished = [m for m in members if m.failed is None]
    after = held_out_loss(model, pack.ctx, eval_batches, finished, pad, device, autocast) if eval_batches else {}
    results = []
    total_tokens = sum(m.tokens - m.tokens_at_start for m in finished)
    for m in members:
        if m.failed is not None:
            results.append({"failed": m.failed, "run_dir": str(m.run_dir)})
            continue
        try:
            partial = m.run_dir / ".adapter.partial"
            shutil.rmtree(partial, ignore_errors=True)
            save_adapter(pack, head, m.index, m, tokenizer, partial)
            shutil.rmtree(m.run_dir / "adapter", ignore_errors=True)
            partial.rename(m.run_dir / "adapter")
            before = m.before
            if not before and m.attempt.checkpoint:  # resumed: keep the first session's numbers
                previous = m.run_dir / "metrics_before.json"
                before = json.loads(previous.read_text()) if previous.exists() else {}
            eval_before = before.get("eval_loss_before")
            eval_after, scored = after.get(m.index, (None, None))
            trainable = sum(p.numel() for p in params[m.index])
            metrics = {
                "eval_loss_before": eval_before, "eval_loss_after": eval_after,
                "perplexity_before": training.perplexity(eval_before),
                "perplexity_after": training.perplexity(eval_after),
                "train_loss": sum(loss for _, loss in m.losses) / len(m.losses) if m.losses else None,
                "train_runtime_s": runtime,
                # this job's real tokens over the pack's wall time (the pack's aggregate is in "packed")
                "train_tokens_per_second": (m.tokens - m.tokens_at_start) / runtime if runtime else None,
                "global_step": m.step, "num_input_tokens_seen": m.tokens,
                "peak_memory_gib": training.peak_memory_gib(plan.model.cuda),
                "trainable_parameters": trainable,
                "total_parameters": trainable + sum(p.numel() for p in model.parameters() if not p.requires_grad),
                "target_modules": list(m.plan.target_modules), "data": data.counts,
                "resumed_from": m.attempt.checkpoint, "world_size": 1,
                "speed": {"attn_implementation": model.config._attn_implementation,
                          "optim": m.args.optim if isinstance(m.args.optim, str) else m.args.optim.value,
                          "per_device_train_batch_size": m.args.per_device_train_batch_size,
                          "gradient_accumulation_steps": m.args.gradient_accumulation_steps,
                          "fixed_shape_tokens": plan.fixed_shape_tokens},
                "perplexity_definition": PERPLEXITY_DEFINITION, "eval_scored_tokens": scored,
                "packed": {"jobs": len(members), "process_jobs": [str(x.run_dir) for x in members],
                           "aggregate_tokens_per_second": total_tokens / runtime if runtime else None,
                           "memory": memory},
                "tokenization": data.tokenization,
            }
            # the final held-out loss, logged unless an evaluation during training already scored this step
            logged = any("eval_loss" in e and e.get("step") == m.step for e in m.log_history)
            m.log_history.append({"eval_loss": eval_after, "step": m.step})
            if m.tracker is not None:
                m.tracker.log_summary(metrics)
                m.tracker.log_model(m.run_dir / "adapter")
                metrics["tracker"] = m.tracker.description
            else:
                metrics["tracker"] = "none"
            metrics["tokenized_cache"] = data.cache
            metrics["run_dir"] = str(m.run_dir)
            if eval_after is not None and not logged:
                log_scalars(m, {"eval/loss": eval_after}, m.step)
            close_tensorboard(m)
            m.attempt.done(metrics)
            if m.tracker is not None:
                m.tracker.finish()
            results.append(metrics)
        except Exception as e:  # one job's save or record failing fails that job alone
            fail(m, e)
            results.append({"failed": m.failed, "run_dir": str(m.run_dir)})
    return results
