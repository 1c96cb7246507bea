"""One training run, top to bottom: `train(cfg)` is what `train.py` calls and what tests call.

Everything that can fail on bad input (config values, data files, columns, LoRA targets, quantization)
is checked before the model's weights are loaded. Every `auto` and hardware-dependent choice is resolved
once, into the run plan (medchat.plan), which is logged, saved as RUN/plan.json and handed to the builders.
The run dir is the run's contract with evaluation, sweeps, reports and export (which open it through
medchat.runs): see README "Run dir".

`stage=dpo|orpo` (preference tuning) runs through the same steps; medchat.stages.preference supplies what
differs (the SFT run it continues, its TRL config, pairs, trainer and reward metrics).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medchat import data, modeling, resume, rundir, training
from medchat import plan as run_plan
from medchat.attempt import Attempt, write_json
from medchat.config import Config
from medchat.config_checks import check_keys, validate
from medchat.data.cache import tokenized
from medchat.evaluation.perplexity import PERPLEXITY_DEFINITION
from medchat.preemption import Interrupted, PreemptionCallback, StopRequest
from medchat.stages import preference as pref
from medchat.tracking import Tracker, is_main_process

log = logging.getLogger(__name__)


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _wait_for_all_ranks(world_size: int) -> None:
    if world_size > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Train a LoRA adapter as `cfg` says; return the final metrics (also in RUN/metrics.json)."""
    run_dir = Path(run_dir) if run_dir is not None else _run_dir()
    main = is_main_process()

    # 1. Everything checkable without weights.
    check_keys(cfg, Config)  # `+key=`, `++key=` and YAML typos get past Hydra's struct mode
    validate(cfg)  # stage.* too (medchat.stages.checks)
    sft = cfg.stage.name == "sft"
    plan = run_plan.resolve(cfg)  # also rejects what the machine cannot do (precision, Liger, quantization)
    init = None
    if not sft:  # DPO's stage.init_from run opened and checked against this base (medchat.runs) before loading
        init = pref.open_init_run(cfg, plan)
        plan = pref.stage_plan(plan, init)
    log.info("%s", plan.describe())
    attempt = Attempt(run_dir, cfg, main)
    attempt.claim(training.checkpoints_dir(run_dir))  # refuses a done run; finds the checkpoint to resume, if any
    _wait_for_all_ranks(plan.world_size)  # every rank has checked the run dir before the main one writes its status
    tokenizer = modeling.load_tokenizer(cfg.model)
    if sft:
        split = data.load_split(cfg.dataset)
        # rows over trainer.max_length are cut or dropped and counted there, cached or not
        train_ds, eval_ds, tokenization, tokenized_cache = tokenized(
            split, tokenizer, cfg.dataset.prompt_format, cfg.trainer.max_length, run_dir,
            truncation=cfg.trainer.truncation, use_cache=cfg.dataset.cache_tokenized, num_proc=cfg.dataset.num_proc)
    else:  # pairs: tokenized (and cut or dropped, counted) in medchat.data.preference, not cached
        split, train_ds, eval_ds, tokenization = pref.load_data(cfg, tokenizer, init)
        tokenized_cache = None
    # how many rows are scored how often: from the data's rows and tokens (trainer.eval_steps unset: ~10 times)
    plan = run_plan.with_data(plan, cfg, train_rows=len(train_ds), train_tokens=token_count(train_ds),
                              eval_rows=len(eval_ds) if eval_ds is not None else 0, eval_tokens=token_count(eval_ds))
    log.info("%s", plan.evaluation.describe())
    args = training.sft_config(cfg, run_dir, plan) if sft else pref.trainer_config(cfg, run_dir, plan)

    # 2. The run dir records what is about to happen before the first step (a resume: checked against it).
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    shape = resume.run_shape(plain_cfg, plan.world_size, args.per_device_train_batch_size,
                             args.gradient_accumulation_steps)  # what the LR schedule is built for
    attempt.record(OmegaConf.to_yaml(cfg, resolve=True), plain_cfg, split, tokenization, shape)
    if main:
        plan.save(run_dir)  # this attempt's plan (the tracker logs it; a resume on other hardware re-plans)
    stop = StopRequest().install()
    tracker = None
    try:
        # inside the try: a wandb.init failure too leaves status failed, not running
        tracker = Tracker(cfg.tracker, run_dir, plain_cfg, _hydra_overrides(), extra={"data": split.counts})
        metrics = _fit(cfg, plan, run_dir, args, tokenizer, train_ds, eval_ds, split, attempt.checkpoint, stop, init)
        metrics["tokenization"] = tokenization
        tracker.log_summary(metrics)
        if main:
            tracker.log_model(run_dir / "adapter")
        metrics["tracker"] = tracker.description
        metrics["tokenized_cache"] = tokenized_cache
        metrics["run_dir"] = str(run_dir)
        if main:
            write_json(run_dir / "metrics.json", metrics)
            rundir.write_status(run_dir, "done")
    except BaseException as e:
        attempt.ended(e, tracker)
        if isinstance(e, Interrupted):
            stop.hand_on()  # under submitit: requeue the job now that its checkpoint is saved
        raise
    finally:
        stop.uninstall()
    tracker.finish()
    return metrics


def token_count(ds) -> int | None:
    """Tokens in a tokenized dataset's input_ids (None: none, or pairs, which have no input_ids column)."""
    if ds is None or "input_ids" not in ds.column_names:
        return None
    import pyarrow.compute as pc

    return int(pc.sum(pc.list_value_length(ds.with_format("arrow")["input_ids"])).as_py() or 0)


def _tokens_in_checkpoint(checkpoint: str | None) -> int:
    if checkpoint is None:
        return 0
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)


def _fit(cfg, plan, run_dir, args, tokenizer, train_ds, eval_ds, split, checkpoint, stop, init=None) -> dict:
    from transformers import set_seed

    from medchat.evaluation.callback import generation_callbacks

    set_seed(cfg.trainer.seed)  # LoRA's A matrices are drawn from the global RNG when the adapter is created
    # [] unless eval.every_steps is set; generates with the plan's generation attention
    callbacks = generation_callbacks(cfg, tokenizer, split.eval, run_dir, plan.model.generation_attention)
    if cfg.stage.name == "sft":
        model = modeling.load_model(plan.model)
        model = modeling.apply_lora(model, modeling.lora_config(cfg.lora, plan.target_modules))
        trainer = training.build_trainer(cfg, plan, model, tokenizer, train_ds, eval_ds, args, callbacks=callbacks)
    else:
        model, trainer = pref.build(cfg, plan, init, tokenizer, train_ds, eval_ds, args, callbacks)

    preempt = PreemptionCallback(stop)
    trainer.add_callback(preempt)
    # the LR schedule's length into attempts.json, rebuilt when a deliberate resume changed it (medchat.resume)
    trainer.add_callback(training.ScheduleCallback(run_dir, resumed=checkpoint is not None))
    before = training.evaluate_before_training(trainer) if eval_ds is not None and not checkpoint else {}
    if before and cfg.stage.name != "sft":  # each held-out pair's rewards, for length-matched reward accuracy
        before.update(pref.pair_metrics(trainer, eval_ds, "eval_before_"))
    if before and is_main_process():  # all of it: a preference stage's rewards before training too
        write_json(run_dir / "metrics_before.json", {"eval_loss_before": before["eval_before_loss"], **before})
    tokens_at_start = _tokens_in_checkpoint(checkpoint)
    out = training.run_trainer(trainer, cfg, resume_from_checkpoint=checkpoint)
    if preempt.stopped_at is not None:  # stopped on a signal after saving: no final eval, no adapter
        raise Interrupted(stop.signum, preempt.stopped_at, str(Path(args.output_dir) / f"checkpoint-{preempt.stopped_at}"))
    after = training.final_evaluation(trainer) if eval_ds is not None else {}
    if after and cfg.stage.name != "sft":
        after.update(pref.pair_metrics(trainer, eval_ds, "eval_"))

    # Written beside RUN/adapter and renamed: a kill mid-save never leaves a half adapter that looks whole.
    partial = run_dir / ".adapter.partial"
    training.save_adapter(trainer, tokenizer, partial)
    if is_main_process():
        shutil.rmtree(run_dir / "adapter", ignore_errors=True)
        partial.rename(run_dir / "adapter")

    trainable, total = model.get_nb_trainable_parameters()
    if not before and checkpoint:  # resumed: keep the first session's numbers
        previous = run_dir / "metrics_before.json"
        before = json.loads(previous.read_text()) if previous.exists() else {}
    eval_before = before.get("eval_loss_before", before.get("eval_before_loss"))
    metrics = {
        "eval_loss_before": eval_before,
        "eval_loss_after": after.get("eval_loss"),
        "perplexity_before": training.perplexity(eval_before),
        "perplexity_after": training.perplexity(after.get("eval_loss")),
        "train_loss": out.metrics.get("train_loss"),
        "train_runtime_s": out.metrics.get("train_runtime"),
        # real (non-pad) tokens this session, over its wall time
        "train_tokens_per_second": (trainer.state.num_input_tokens_seen - tokens_at_start)
        / out.metrics["train_runtime"] if args.include_num_input_tokens_seen not in ("no", False) else None,
        "global_step": trainer.state.global_step,
        "num_input_tokens_seen": trainer.state.num_input_tokens_seen,
        "peak_memory_gib": training.peak_memory_gib(plan.model.cuda),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "target_modules": list(plan.target_modules),
        "data": split.counts,
        "resumed_from": checkpoint,
        **training.best_and_early(trainer, cfg),
        "world_size": plan.world_size,
        "speed": {  # what the trainer really ran with (plan.json says what was planned)
            "attn_implementation": model.config._attn_implementation,
            "use_liger_kernel": bool(args.use_liger_kernel),
            "optim": args.optim if isinstance(args.optim, str) else args.optim.value,
            "gradient_checkpointing": bool(args.gradient_checkpointing),
            "checkpoint_every_n_layers": (args.gradient_checkpointing_kwargs or {}).get("every_n_layers", 1),
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "activation_offloading": bool(getattr(args, "activation_offloading", False)),  # ORPOConfig has none
            **getattr(trainer, "medchat_speed", {}),  # fused LoRA projections, compiled layers
        },
    }
    if cfg.stage.name == "sft" and eval_ds is not None:
        # the same definition, and the same name, as evaluate.py's reference perplexity (token-weighted)
        metrics["perplexity_definition"] = PERPLEXITY_DEFINITION
        metrics["eval_scored_tokens"] = after.get("eval_scored_tokens")
    if cfg.stage.name != "sft":
        metrics.update(pref.stage_metrics(cfg, init, before, after))
    return metrics
