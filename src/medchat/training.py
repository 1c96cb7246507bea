"""The trainer section + run plan -> TRL SFTConfig (and the TrainingArguments every stage shares) and SFTTrainer,
the callbacks medchat adds, and running the trainer.

Every function takes `trainer_cfg` (the config's `trainer` section; `tracker_cfg` where the tracker names the run)
and the medchat.plan.RunPlan: every `auto` value arrives resolved there; nothing here asks the machine.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from medchat import sft_trainer
from medchat.console import datasets_progress
from medchat.speed.apply import apply as apply_speed

log = logging.getLogger(__name__)


def report_to(backend: str) -> list[str]:
    return {"wandb": ["wandb"], "tensorboard": ["tensorboard"], "none": []}[backend]


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def sft_config(trainer_cfg, tracker_cfg, run_dir: Path, plan):
    """trainer.* (+ tracker.*) and the run plan -> trl.SFTConfig. Keys pass through under their SFTConfig names."""
    from trl import SFTConfig

    return SFTConfig(
        **training_arguments(trainer_cfg, tracker_cfg, run_dir, plan, SFTConfig),
        packing=trainer_cfg.packing,
        packing_strategy="bfd",  # padding-free: position_ids restart per example, so attention stays per document
        # fixed shape: TRL's collator pads each micro-batch to this many tokens. Packed, the padding follows the
        # micro-batch's documents with position_ids 0 (each pad token its own one-token document: it attends to
        # itself only, and no real token attends to it) and label -100 (never trained); tests/test_fixed_shape.py
        pad_to_multiple_of=plan.fixed_shape_tokens,
    )


def training_arguments(trainer_cfg, tracker_cfg, run_dir: Path, plan, config_class) -> dict:
    """The keys every stage's TRL config shares (SFTConfig, DPOConfig, ORPOConfig: all TrainingArguments plus
    max_length), from trainer.* (+ tracker.name and tracker.backend) and the run plan, under their TRL names."""
    t = trainer_cfg
    eval_on = t.eval_strategy != "no"
    checkpointing = plan.checkpointing
    batch = plan.batch  # the config's split, or the auto micro-batch plan's (medchat.speed.apply)
    kwargs = {}
    if "train_sampling_strategy" in inspect.signature(config_class).parameters:
        kwargs["train_sampling_strategy"] = t.train_sampling_strategy
    elif t.train_sampling_strategy == "group_by_length":  # transformers before train_sampling_strategy existed
        kwargs["group_by_length"] = True
    return dict(
        output_dir=str(checkpoints_dir(run_dir)),
        run_name=tracker_cfg.name or run_dir.name,
        num_train_epochs=float(t.num_train_epochs),
        max_steps=int(t.max_steps),
        per_device_train_batch_size=batch.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=batch.gradient_accumulation_steps,
        activation_offloading=batch.activation_offloading,
        learning_rate=float(t.learning_rate),
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=float(t.warmup_steps),
        weight_decay=float(t.weight_decay),
        max_grad_norm=float(t.max_grad_norm),
        optim=plan.optim,
        logging_steps=t.logging_steps,
        eval_strategy=t.eval_strategy,
        eval_steps=plan.evaluation.every if eval_on else None,  # the plan's cadence (medchat.eval_schedule.evaluation_plan)
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16",
        use_cpu=plan.use_cpu,
        **checkpointing_arguments(config_class, checkpointing.enabled, checkpointing.kwargs()),
        use_liger_kernel=plan.liger,
        max_length=t.max_length,
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=report_to(tracker_cfg.backend),
        include_num_input_tokens_seen="non_padding",
        # transformers' filter tests every micro-batch's loss for NaN on the host (a GPU sync per micro-batch) and
        # then hides it from the logged mean; here a NaN reaches the log, where FailOnNonFiniteLoss stops the run
        logging_nan_inf_filter=False,
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
        save_only_model=False,  # optimizer and RNG state are needed to resume exactly
        # early stopping needs the best checkpoint tracked; transformers infers greater_is_better from the name
        load_best_model_at_end=bool(t.load_best_model_at_end or t.early_stopping_patience),
        metric_for_best_model=t.metric_for_best_model if (t.load_best_model_at_end or t.early_stopping_patience)
        else None,
        **kwargs,
    )


def checkpointing_arguments(config_class, enabled: bool, kwargs: dict | None) -> dict:
    """The checkpointing plan under the names this transformers takes: `activation_checkpointing*` where it has
    them (it renamed `gradient_checkpointing*`, which then warn FutureWarning), else the old names (5.17)."""
    new = "activation_checkpointing" in inspect.signature(config_class).parameters
    prefix = "activation" if new else "gradient"
    return {f"{prefix}_checkpointing": enabled, f"{prefix}_checkpointing_kwargs": kwargs}


class FailAtStep(TrainerCallback):
    """trainer.fail_at_step=N: crash at the end of step N, after that step's checkpoint if it saves one."""

    def __init__(self, step: int):
        self.step = step

    def _crash(self, state):
        raise RuntimeError(f"trainer.fail_at_step={self.step}: simulated crash at step {state.global_step}")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and not control.should_save:
            self._crash(state)

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self._crash(state)


class FailOnNonFiniteLoss(TrainerCallback):
    """Stop the run when the logged training loss is NaN or infinite: its weights are no longer usable, and a run
    that went on would save them as if it had trained. Read at logging steps only (no per-step sync)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss} at step {state.global_step}: the weights are no longer "
                                     "finite (lower trainer.learning_rate, or check the data); the run stops here")


class ScheduleCallback(TrainerCallback):
    """At train begin (the checkpoint's optimizer and scheduler loaded): make the learning-rate schedule's length
    this attempt's total steps, and record it in attempts.json.

    A resume that changed trainer.max_steps / num_train_epochs / the world size or global batch (allowed only with
    trainer.resume=true, medchat.resume) continues on a schedule built for the new length: transformers' LambdaLR
    schedules are functools.partial(..., num_warmup_steps, num_training_steps); those are set to the new total
    (and its warmup, when trainer.warmup_steps is a ratio) where they hold another (transformers 5.25 already
    builds the scheduler for the new total on resume: the checkpoint's scheduler state holds no length), and the
    optimizer's learning rate, loaded from the checkpoint at the old schedule's value, is set to the new
    schedule's value at the resumed step, so the first step after the resume already follows it."""

    def __init__(self, run_dir: Path, resumed: bool):
        self.run_dir, self.resumed = Path(run_dir), resumed

    def on_train_begin(self, args, state, control, lr_scheduler=None, optimizer=None, **kwargs):
        from medchat import resume

        total = int(state.max_steps)
        warmup = args.get_warmup_steps(total)
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate's wrapper holds the real one
        previous = resume.previous_schedule(self.run_dir) if self.resumed else None
        new_length = bool(previous) and previous.get("total_steps") != total
        # False where transformers already built the schedule for this length (5.25 does on resume); the rate
        # loaded with the optimizer state is the old schedule's either way, and is reset when the length changed
        set_here = set_schedule_length(scheduler, optimizer, total, warmup, reset_lr=new_length)
        lr = scheduler.get_last_lr()[0] if scheduler is not None else None
        schedule = {"lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
                    "total_steps": total, "warmup_steps": warmup, "at_step": state.global_step,
                    "learning_rate_at_step": lr, "length_set_by_medchat": set_here,
                    "learning_rate_reset": new_length,
                    "previous_total_steps": previous.get("total_steps") if previous else None}
        if state.is_world_process_zero:
            resume.record_schedule(self.run_dir, schedule)
        if new_length:
            log.warning("resumed at step %d with a schedule of %d steps (was %d): the learning rate follows the new "
                        "schedule from here (%.3g)", state.global_step, total, previous["total_steps"], lr or 0.0)


def set_schedule_length(scheduler, optimizer, total: int, warmup: int, reset_lr: bool = False) -> bool:
    """Make a LambdaLR schedule built from functools.partial(num_training_steps=...) one of `total` steps (and
    `warmup` warmup steps). When that changed it, or `reset_lr` (the previous attempt's schedule had another
    length: the optimizer state loaded from its checkpoint holds that schedule's rate), the optimizer's learning
    rates become the schedule's at its current step. -> whether the schedule changed (False also for a schedule
    of another kind, left as it is)."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas:
        return False
    changed = False
    for i, fn in enumerate(lambdas):
        if not isinstance(fn, functools.partial) or "num_training_steps" not in fn.keywords:
            continue
        keywords = {**fn.keywords, "num_training_steps": total}
        if "num_warmup_steps" in keywords:
            keywords["num_warmup_steps"] = warmup
        if keywords != fn.keywords:
            lambdas[i] = functools.partial(fn.func, *fn.args, **keywords)
            changed = True
    if changed or reset_lr:
        lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas)]
        for group, lr in zip(optimizer.param_groups if optimizer is not None else [], lrs):
            group["lr"] = lr
        scheduler._last_lr = lrs
    return changed


def build_trainer(trainer_cfg, plan, model, tokenizer, train_ds, eval_ds, args, callbacks=()):
    SFTTrainer = sft_trainer.sft_trainer_class()

    with datasets_progress(rows=len(train_ds) + (len(eval_ds) if eval_ds is not None else 0)):  # TRL's maps
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    if not plan.fsdp:  # FSDP flattens one dtype per wrapped unit: adapters stay in the model's dtype
        keep_adapter_fp32(trainer.model)
    # fused LoRA projections and regional compilation, as the plan says (medchat.speed.apply)
    trainer.medchat_speed = apply_speed(trainer, plan)
    add_callbacks(trainer, trainer_cfg)
    return trainer


def add_callbacks(trainer, trainer_cfg) -> None:
    """What every stage's trainer gets from trainer.*: the console's progress (a bar with an ETA on a terminal,
    one compact line per log step elsewhere, instead of the trainer's raw dicts), the testing crash, early
    stopping."""
    from transformers.trainer_callback import PrinterCallback

    from medchat.progress import TrainingProgress

    trainer.remove_callback(PrinterCallback)  # disable_tqdm=True: it would print every log as a raw dict
    trainer.add_callback(TrainingProgress())
    trainer.add_callback(FailOnNonFiniteLoss())
    if trainer_cfg.fail_at_step:
        trainer.add_callback(FailAtStep(trainer_cfg.fail_at_step))
    if trainer_cfg.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=trainer_cfg.early_stopping_patience,
                                                   early_stopping_threshold=trainer_cfg.early_stopping_threshold))


def best_and_early(trainer, trainer_cfg) -> dict:
    """What metrics.json says about best-checkpoint selection and early stopping."""
    state, t = trainer.state, trainer_cfg
    if not (t.load_best_model_at_end or t.early_stopping_patience):
        return {}
    planned = state.max_steps  # the trainer's own total (from max_steps or the epochs)
    best = state.best_model_checkpoint
    return {
        "best_metric": state.best_metric,
        "metric_for_best_model": t.metric_for_best_model,
        "best_checkpoint": best,
        "best_step": int(best.rsplit("-", 1)[1]) if best else None,
        "loaded_best_model": bool(best),
        "stopped_early": bool(t.early_stopping_patience) and state.global_step < planned,
        "planned_steps": planned,
    }


def evaluate_before_training(trainer) -> dict:
    """trainer.evaluate() before trainer.train(), without breaking multi-process training.

    evaluate() prepares the model for evaluation only (no DDP wrapper) and marks it prepared; train() then
    skips the DDP wrap, and every rank trains its own copy with no gradient all-reduce (seen with transformers
    5.23 / accelerate 1.15: two ranks' adapters diverged from the first update). In a multi-process run the
    mark is undone so that train() wraps the model. FSDP prepares fully in evaluate() and is left alone.

    Upstream behaviour worked around: transformers' Trainer._wrap_model / accelerate's Accelerator.prepare_model
    skip a model whose private `_is_accelerate_prepared` is set, and evaluate() sets it on the unwrapped model
    (accelerate keeps it in its private `accelerator._models` list). When it can go: when
    tests/test_multi_gpu.py::test_two_processes_train_like_one (two ranks, held-out rows scored before
    training, the DDP adapter compared with the one-process adapter) passes with this function reduced to `trainer.evaluate(metric_key_prefix="eval_before")`, i.e. when
    train() wraps a model that evaluate() prepared; or if either private name disappears upstream (then the
    getattr below is False and nothing is undone, and that test shows whether the wrap still happens).
    """
    metrics = trainer.evaluate(metric_key_prefix="eval_before")
    model, accelerator = trainer.model, trainer.accelerator
    if trainer.args.world_size > 1 and not trainer.is_fsdp_enabled and getattr(model, "_is_accelerate_prepared", False):
        model._is_accelerate_prepared = False
        accelerator._models = [m for m in accelerator._models if m is not model]
    return metrics


def final_evaluation(trainer) -> dict:
    """The trained model's held-out metrics: the trainer's own evaluation at the last step when the cadence made
    one there (eval_steps dividing the step count), else a new one. The same numbers, without scoring every
    held-out row twice in a row; a run that reloads its best checkpoint at the end is always evaluated again."""
    state = trainer.state
    if not trainer.args.load_best_model_at_end:
        last = next((h for h in reversed(state.log_history) if "eval_loss" in h), None)
        if last is not None and last.get("step") == state.global_step:
            return {k: v for k, v in last.items() if k.startswith("eval_")}
    return trainer.evaluate()


def run_trainer(trainer, trainer_cfg, resume_from_checkpoint=None):
    """trainer.train(), turning an out-of-memory error into one that says how to make the step fit."""
    try:
        return trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except torch.OutOfMemoryError as e:
        args = trainer.args
        every = (args.gradient_checkpointing_kwargs or {}).get("every_n_layers", 1)
        raise torch.OutOfMemoryError(
            oom_advice(trainer_cfg, every_layer_checkpointed=bool(args.gradient_checkpointing) and every == 1)
            + f"\n(original error: {e})") from e


def oom_advice(trainer_cfg, every_layer_checkpointed: bool) -> str:
    """What to change in trainer.* when a training step ran out of GPU memory."""
    t = trainer_cfg
    tips = [f"lower trainer.per_device_train_batch_size (now {t.per_device_train_batch_size}) and raise "
            f"trainer.gradient_accumulation_steps (now {t.gradient_accumulation_steps}) to keep the batch",
            f"lower trainer.max_length (now {t.max_length})"]
    if not every_layer_checkpointed:
        tips.insert(0, "set trainer.gradient_checkpointing=true (checkpoint every layer), or lower "
                       "trainer.memory_budget_gib so that auto checkpoints more layers")
    return "the training step ran out of GPU memory. To fit it: " + "; ".join(tips)


def save_adapter(trainer, tokenizer, out_dir: Path) -> None:
    """The adapter and tokenizer, written once (by the main process), also under FSDP."""
    if getattr(trainer, "is_fsdp_enabled", False):
        # A sharded state dict would leave one shard per rank instead of a loadable adapter.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(out_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out_dir)


def keep_adapter_fp32(model) -> None:
    """TRL casts QLoRA adapter weights to bf16; medchat keeps them fp32 (mixed precision still computes in
    bf16). Updates smaller than bf16's resolution are then not lost, and a resumed run, whose adapter PEFT
    reloads in fp32, continues exactly as the uninterrupted one would."""
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()


def peak_memory_gib(cuda: bool) -> float | None:
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    return None


def perplexity(loss: float | None) -> float | None:
    return math.exp(loss) if loss is not None and loss < 50 else None
