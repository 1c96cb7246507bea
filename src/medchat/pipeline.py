"""One training run, top to bottom: `train(cfg)` is what `train.py` calls and what tests call.

Everything that can fail on bad input (config values, data files, columns, LoRA targets, quantization)
is checked before the model's weights are loaded. Every `auto` and hardware-dependent choice is resolved
once, into the run plan (medchat.plan), which is logged, saved as RUN/plan.json and handed to the builders.
The run dir is the run's contract with evaluation, sweeps, reports and export (which open it through
medchat.runs): see README "Run dir".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medchat import data, modeling, provenance, rundir, training
from medchat import plan as run_plan
from medchat.config import validate
from medchat.data.cache import tokenized
from medchat.tracking import Tracker, is_main_process

log = logging.getLogger(__name__)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


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
    validate(cfg)
    plan = run_plan.resolve(cfg)  # also rejects what the machine cannot do (precision, Liger, quantization)
    log.info("%s", plan.describe())
    args = training.sft_config(cfg, run_dir, plan)
    rundir.claim(run_dir, resume=cfg.trainer.resume)
    _wait_for_all_ranks(plan.world_size)  # every rank has checked the run dir before the main one writes its status
    split = data.load_split(cfg.dataset)
    tokenizer = modeling.load_tokenizer(cfg.model)
    train_ds, eval_ds, tokenized_cache = tokenized(split, tokenizer, cfg.dataset.prompt_format, cfg.trainer.max_length,
                                                   run_dir, use_cache=cfg.dataset.cache_tokenized,
                                                   num_proc=cfg.dataset.num_proc)

    # 2. The run dir records what is about to happen before the first step.
    run_dir.mkdir(parents=True, exist_ok=True)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    if main:
        rundir.write_status(run_dir, "running")
        # what evaluate.py, chat and export read (also when train() is called without Hydra's .hydra/)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        plan.save(run_dir)
        _write_json(run_dir / "split.json", split.manifest())
        with open(run_dir / "eval.jsonl", "w") as f:
            for r in split.eval:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        _write_json(run_dir / "provenance.json", provenance.collect(split.fingerprint, split.source))
    tracker = Tracker(cfg.tracker, run_dir, plain_cfg, _hydra_overrides(), extra={"data": split.counts})
    try:
        metrics = _fit(cfg, plan, run_dir, args, tokenizer, train_ds, eval_ds, split)
    except BaseException as e:
        if main:
            rundir.write_status(run_dir, "failed", reason=f"{type(e).__name__}: {e}"[:2000])
        tracker.finish(failed=True)
        raise
    tracker.log_summary(metrics)
    if main:
        tracker.log_model(run_dir / "adapter")
    metrics["tracker"] = tracker.description
    metrics["tokenized_cache"] = tokenized_cache
    metrics["run_dir"] = str(run_dir)
    if main:
        _write_json(run_dir / "metrics.json", metrics)
        rundir.write_status(run_dir, "done")
    tracker.finish()
    return metrics


def _tokens_in_checkpoint(checkpoint: str | None) -> int:
    if checkpoint is None:
        return 0
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)


def _fit(cfg, plan, run_dir, args, tokenizer, train_ds, eval_ds, split) -> dict:
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    set_seed(cfg.trainer.seed)  # LoRA's A matrices are drawn from the global RNG when the adapter is created
    model = modeling.load_model(plan.model)
    model = modeling.apply_lora(model, modeling.lora_config(cfg.lora, plan.target_modules))
    from medchat.evaluation.callback import generation_callbacks

    # [] unless eval.every_steps is set; generates with the plan's generation attention
    callbacks = generation_callbacks(cfg, tokenizer, split.eval, run_dir, plan.model.generation_attention)
    trainer = training.build_trainer(cfg, plan, model, tokenizer, train_ds, eval_ds, args, callbacks=callbacks)

    checkpoint = None
    if cfg.trainer.resume:
        ckpt_dir = Path(args.output_dir)
        checkpoint = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
        log.info("resuming from %s", checkpoint or "scratch (no checkpoint yet)")
    before = training.evaluate_before_training(trainer) if eval_ds is not None and not checkpoint else {}
    if before and is_main_process():
        _write_json(run_dir / "metrics_before.json", {"eval_loss_before": before["eval_before_loss"]})
    tokens_at_start = _tokens_in_checkpoint(checkpoint)
    out = training.run_trainer(trainer, cfg, resume_from_checkpoint=checkpoint)
    after = trainer.evaluate() if eval_ds is not None else {}

    training.save_adapter(trainer, tokenizer, run_dir / "adapter")

    trainable, total = model.get_nb_trainable_parameters()
    eval_before = before.get("eval_before_loss")
    if eval_before is None and checkpoint:  # resumed: keep the first session's number
        previous = run_dir / "metrics_before.json"
        eval_before = json.loads(previous.read_text()).get("eval_loss_before") if previous.exists() else None
    metrics = {
        "eval_loss_before": eval_before,
        "eval_loss_after": after.get("eval_loss"),
        "perplexity_before": training.perplexity(eval_before),
        "perplexity_after": training.perplexity(after.get("eval_loss")),
        "train_loss": out.metrics.get("train_loss"),
        "train_runtime_s": out.metrics.get("train_runtime"),
        # real (non-pad) tokens this session, over its wall time
        "train_tokens_per_second": (trainer.state.num_input_tokens_seen - tokens_at_start)
        / out.metrics["train_runtime"],
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
            "activation_offloading": bool(args.activation_offloading),
            **getattr(trainer, "medchat_speed", {}),  # fused LoRA projections, compiled layers
        },
    }
    return metrics
