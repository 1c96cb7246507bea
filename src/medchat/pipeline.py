"""One training run, top to bottom: `train(cfg)` is what `train.py` calls and what tests call.

`train` (and `preview`, its first steps without training, for python -m medchat.inspect) is the only place that
holds the whole composed config: every module it calls gets the section it needs. In order:

1. checks without weights (medchat.config_checks: names, values, and the stage's own stage.* checks);
2. the run plan (medchat.plan): every `auto` and hardware-dependent choice resolved once (it also rejects what
   the machine cannot do, and says where the tokenized cache lives), then adjusted by the stage;
3. the run dir claimed (medchat.attempt: refuses a finished run, finds the checkpoint to resume);
4. the tokenizer (medchat.modeling), the stage's rows, tokenized (medchat.stages: sft through medchat.data and
   its cache, dpo/orpo pairs through medchat.data.preference), the evaluation cadence from their counts;
5. the stage's TRL config; the run dir's record of this attempt (config.yaml, split.json, eval.jsonl,
   provenance.json, attempts.json, plan.json), written before the first step;
6. `fit`: the stage's model and trainer (medchat.stages, medchat.training), held-out loss before, training,
   held-out loss after, the adapter saved atomically, the metrics; then the tracker's summary and metrics.json.

The stage (`stage=sft|dpo|orpo`, medchat.stages.stage_for) is one object behind one protocol
(medchat.stages.base.Stage): `train` calls it and never asks which stage it is. The run dir is the run's
contract with evaluation, sweeps, reports and export (which open it through medchat.runs): see README "Run dir".
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medchat import modeling, sft_trainer, training
from medchat import plan as run_plan
from medchat.atomic import write_json
from medchat.attempt import Attempt
from medchat.config import Config
from medchat.config_checks import check_keys, validate
from medchat.evaluation.callback import generation_callbacks
from medchat.preemption import Interrupted, PreemptionCallback, StopRequest
from medchat.stages import stage_for
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
    validate(cfg)
    stage = stage_for(cfg.stage)
    stage.check(cfg.dataset)  # stage.*, by the stage itself
    plan = run_plan.resolve(cfg)  # also rejects what the machine cannot do (precision, Liger, quantization)
    # DPO's stage.init_from run is opened (medchat.runs) and checked against this base (medchat.run_models)
    plan = stage.plan(plan, cfg.model, cfg.dataset)
    log.info("%s", plan.describe())
    attempt = Attempt(run_dir, cfg.trainer.resume, main)
    attempt.claim(training.checkpoints_dir(run_dir))  # refuses a done run; finds the checkpoint to resume, if any
    _wait_for_all_ranks(plan.world_size)  # every rank has checked the run dir before the main one writes its status
    tokenizer = modeling.load_tokenizer(cfg.model)
    data = stage.data(cfg.dataset, cfg.trainer, tokenizer, run_plan.tokenized_cache_dir(run_dir))
    # how many rows are scored how often: from the data's rows and tokens (trainer.eval_steps unset: ~10 times)
    plan = run_plan.with_data(plan, cfg, packs=stage.packs, train_rows=len(data.train),
                              train_tokens=token_count(data.train),
                              eval_rows=len(data.eval) if data.eval is not None else 0,
                              eval_tokens=token_count(data.eval))
    log.info("%s", plan.evaluation.describe())
    args = stage.trainer_config(cfg.trainer, cfg.tracker, run_dir, plan)

    # 2. The run dir records what is about to happen before the first step (a resume: checked against it).
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    attempt.record(OmegaConf.to_yaml(cfg, resolve=True), plain_cfg, data.split, data.tokenization, plan.to_dict(),
                   world_size=plan.world_size, per_device_train_batch_size=args.per_device_train_batch_size,
                   gradient_accumulation_steps=args.gradient_accumulation_steps)  # + RUN/plan.json
    stop = StopRequest().install()
    tracker = None
    try:
        # inside the try: a wandb.init failure too leaves status failed, not running
        tracker = Tracker(cfg.tracker, run_dir, plain_cfg, _hydra_overrides(), extra={"data": data.counts})
        # [] unless eval.every_steps is set; generates with the plan's generation attention
        callbacks = generation_callbacks(cfg.eval, tokenizer, data.split.eval, run_dir, plan.model.generation_attention,
                                         prompt_format=cfg.dataset.prompt_format, backend=cfg.tracker.backend)
        metrics = fit(stage, plan, run_dir, args, tokenizer, data, cfg.trainer, cfg.lora, callbacks=callbacks,
                      checkpoint=attempt.checkpoint, stop=stop)
        metrics["tokenization"] = data.tokenization
        tracker.log_summary(metrics)
        if main:
            tracker.log_model(run_dir / "adapter")
        metrics["tracker"] = tracker.description
        metrics["tokenized_cache"] = data.cache
        metrics["run_dir"] = str(run_dir)
        attempt.done(metrics)  # RUN/metrics.json, status done
    except BaseException as e:
        attempt.ended(e, tracker)
        if isinstance(e, Interrupted):
            stop.hand_on()  # under submitit: requeue the job now that its checkpoint is saved
        raise
    finally:
        stop.uninstall()
    tracker.finish()
    return metrics


@dataclass
class Preview:
    """What train.py would train on, found before any weights load (python -m medchat.inspect prints it)."""

    split: object  # data.Split: the rows of both sides
    tokenizer: object
    prompt_format: str
    max_length: int
    summary: dict  # the data counts, model, LoRA and batch settings, and the run plan


def preview(cfg: DictConfig, run_dir: str | Path | None = None) -> Preview:
    """train()'s path up to the first forward pass: the config checked, the data read and split, the tokenizer
    loaded, and the run plan: the one the run resolved on its training machine (RUN/plan.json), else what this
    config resolves to on this machine (from the model's config only)."""
    from medchat import data

    validate(cfg)
    stage_for(cfg.stage).check(cfg.dataset)
    split = data.load_split(cfg.dataset)
    tokenizer = modeling.load_tokenizer(cfg.model)  # the tokenizer only: no model weights are read
    saved = run_plan.read_saved(run_dir) if run_dir else None
    t = cfg.trainer
    summary = {"data": split.counts, "model": cfg.model.name_or_path, "tokenizer": cfg.model.tokenizer or
               cfg.model.name_or_path, "chat_template": cfg.model.chat_template,
               "prompt_format": cfg.dataset.prompt_format, "quant": cfg.quant.mode,
               "lora": {"r": cfg.lora.r, "alpha": cfg.lora.lora_alpha,
                        "targets": cfg.lora.target_modules or cfg.lora.targets},
               "packing": t.packing, "tokens_per_step": t.per_device_train_batch_size * t.gradient_accumulation_steps
               * t.max_length if t.packing else None, "max_steps": t.max_steps,
               "planned_on": "the training machine (RUN/plan.json)" if saved is not None else "this machine",
               "run_plan": saved if saved is not None else run_plan.resolve(cfg).to_dict()}
    return Preview(split, tokenizer, cfg.dataset.prompt_format, t.max_length, summary)


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


def fit(stage, plan, run_dir: Path, args, tokenizer, data, trainer_cfg, lora_cfg, *, callbacks=(),
        checkpoint: str | None = None, stop: StopRequest | None = None) -> dict:
    """The stage's model and trainer, trained: held-out metrics before (a fresh start) and after, the adapter
    saved as RUN/adapter (written beside it and renamed), -> the metrics. `stop`: the signal handler that
    stops at the next checkpoint (train() installs one); what bench/qlora_throughput.py times too."""
    from transformers import set_seed

    set_seed(trainer_cfg.seed)  # LoRA's A matrices are drawn from the global RNG when the adapter is created
    model, trainer = stage.build(plan, lora_cfg, trainer_cfg, tokenizer, data, args, callbacks)
    stop = stop if stop is not None else StopRequest()
    preempt = PreemptionCallback(stop)
    trainer.add_callback(preempt)
    # the LR schedule's length into attempts.json, rebuilt when a deliberate resume changed it (medchat.resume)
    trainer.add_callback(training.ScheduleCallback(run_dir, resumed=checkpoint is not None))
    before = training.evaluate_before_training(trainer) if data.eval is not None and not checkpoint else {}
    if before:  # what the stage measures on the held-out rows beside the loss (DPO/ORPO: each pair's rewards)
        before.update(stage.held_out(trainer, data, "eval_before_"))
    if before and is_main_process():  # all of it: a preference stage's rewards before training too
        write_json(run_dir / "metrics_before.json", {"eval_loss_before": before["eval_before_loss"], **before})
    tokens_at_start = _tokens_in_checkpoint(checkpoint)
    out = training.run_trainer(trainer, trainer_cfg, resume_from_checkpoint=checkpoint)
    if preempt.stopped_at is not None:  # stopped on a signal after saving: no final eval, no adapter
        raise Interrupted(stop.signum, preempt.stopped_at, str(Path(args.output_dir) / f"checkpoint-{preempt.stopped_at}"))
    after = training.final_evaluation(trainer) if data.eval is not None else {}
    if after:
        after.update(stage.held_out(trainer, data, "eval_"))

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
    return {
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
        "data": data.counts,
        "resumed_from": checkpoint,
        **training.best_and_early(trainer, trainer_cfg),
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
            "fixed_shape_tokens": plan.fixed_shape_tokens,
            "padding_share": sft_trainer.padding_share(trainer, trainer.state.num_input_tokens_seen - tokens_at_start,
                                                    plan.world_size)
            if args.include_num_input_tokens_seen not in ("no", False) else None,
        },
        **stage.metrics(before, after, data),  # SFT: the perplexity definition; DPO/ORPO: rewards
    }
