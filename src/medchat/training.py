"""Config -> TRL SFTConfig and SFTTrainer, plus the callbacks medchat adds."""

from __future__ import annotations

import functools
import inspect
import logging
import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from medchat import perf
from medchat.modeling import has_cuda, local_rank, precision_flags

log = logging.getLogger(__name__)


def optimizer_name(optim: str) -> str:
    if optim != "auto":
        return optim
    return "adamw_torch_fused" if has_cuda() else "adamw_torch"


def lora_targets_for_estimate(lora_cfg) -> list[str]:
    if lora_cfg.target_modules:
        return list(lora_cfg.target_modules)
    return {"qv": ["q_proj", "v_proj"], "attention": ["q_proj", "k_proj", "v_proj", "o_proj"]}.get(
        lora_cfg.targets, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def checkpoint_plan(cfg, liger: bool) -> perf.CheckpointPlan:
    """trainer.gradient_checkpointing (+ memory budget) -> which decoder layers are checkpointed."""
    t = cfg.trainer
    choice = perf.normalize_checkpointing(t.gradient_checkpointing)
    if choice != "auto" or not has_cuda() or perf.fsdp_enabled():
        # Under FSDP the model does not fit one GPU by assumption: auto checkpoints every layer.
        return perf.plan_checkpointing(choice, every_n_layers=t.checkpoint_every_n_layers, layers=None)
    from transformers import AutoConfig

    from medchat.modeling import attn_implementation, model_path

    path = model_path(cfg.model)
    config = AutoConfig.from_pretrained(path, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code)
    arch = perf.Arch.from_config(config)
    estimate = functools.partial(
        perf.estimate_peak_bytes, arch, tokens=t.per_device_train_batch_size * t.max_length,
        quant_mode=cfg.quant.mode, lora_r=cfg.lora.r, lora_targets=lora_targets_for_estimate(cfg.lora),
        lora_dropout=cfg.lora.lora_dropout, liger=liger, attention=attn_implementation(cfg.model, path),
        sequence=t.max_length)
    return perf.plan_checkpointing(
        choice, every_n_layers=t.checkpoint_every_n_layers, layers=arch.layers,
        estimate=lambda n: estimate(checkpointed_layers=n),
        budget_bytes=perf.memory_budget_bytes(t.memory_budget_gib, local_rank()))


def speed_choices(cfg) -> dict:
    """What the `auto` values resolved to on this machine (also saved in metrics.json)."""
    liger = perf.choose_liger(cfg.trainer.use_liger_kernel, cuda=has_cuda())
    plan = checkpoint_plan(cfg, liger)
    return {"optim": optimizer_name(cfg.trainer.optim), "use_liger_kernel": liger, "checkpointing": plan}


def report_to(backend: str) -> list[str]:
    return {"wandb": ["wandb"], "tensorboard": ["tensorboard"], "none": []}[backend]


def sft_config(cfg, run_dir: Path):
    """cfg.trainer (+ tracker) -> trl.SFTConfig. Keys pass through under their SFTConfig names."""
    from trl import SFTConfig

    t = cfg.trainer
    eval_on = t.eval_strategy != "no"
    choices = speed_choices(cfg)
    plan = choices["checkpointing"]
    # --- issue 13 wiring: the auto micro-batch plan overrides batch split, checkpointing and offloading ---
    from medchat import speed_wiring

    plan, batch_kwargs = speed_wiring.micro_batch(cfg, choices, plan)
    # --- end issue 13 wiring ---
    log.info("speed choices: optim=%s liger=%s checkpointing: %s", choices["optim"], choices["use_liger_kernel"],
             plan.reason)
    kwargs = {}
    if "train_sampling_strategy" in inspect.signature(SFTConfig).parameters:
        kwargs["train_sampling_strategy"] = t.train_sampling_strategy
    elif t.train_sampling_strategy == "group_by_length":  # transformers before train_sampling_strategy existed
        kwargs["group_by_length"] = True
    return SFTConfig(
        output_dir=str(run_dir / "checkpoints"),
        run_name=cfg.tracker.name or run_dir.name,
        num_train_epochs=float(t.num_train_epochs),
        max_steps=int(t.max_steps),
        per_device_train_batch_size=batch_kwargs["per_device_train_batch_size"],
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=batch_kwargs["gradient_accumulation_steps"],
        activation_offloading=batch_kwargs["activation_offloading"],
        learning_rate=float(t.learning_rate),
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=float(t.warmup_steps),
        weight_decay=float(t.weight_decay),
        max_grad_norm=float(t.max_grad_norm),
        optim=choices["optim"],
        logging_steps=t.logging_steps,
        eval_strategy=t.eval_strategy,
        eval_steps=(t.eval_steps or t.logging_steps) if eval_on else None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        **precision_flags(t.precision),
        use_cpu=not has_cuda(),
        gradient_checkpointing=plan.enabled,
        gradient_checkpointing_kwargs=plan.kwargs(),
        use_liger_kernel=choices["use_liger_kernel"],
        packing=t.packing,
        packing_strategy="bfd",  # padding-free: position_ids restart per example, so attention stays per document
        max_length=t.max_length,
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=report_to(cfg.tracker.backend),
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
        save_only_model=False,  # optimizer and RNG state are needed to resume exactly
        # early stopping needs the best checkpoint tracked; transformers infers greater_is_better from the name
        load_best_model_at_end=bool(t.load_best_model_at_end or t.early_stopping_patience),
        metric_for_best_model=t.metric_for_best_model if (t.load_best_model_at_end or t.early_stopping_patience)
        else None,
        **kwargs,
    )


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


def build_trainer(cfg, model, tokenizer, train_ds, eval_ds, args, callbacks=()):
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    if not perf.fsdp_enabled():  # FSDP flattens one dtype per wrapped unit: adapters stay in the model's dtype
        keep_adapter_fp32(trainer.model)
    # --- issue 13 wiring: fused LoRA projections, regional compilation ---
    from medchat.speed.apply import apply as apply_speed

    trainer.medchat_speed = apply_speed(trainer, cfg)
    # --- end issue 13 wiring ---
    if cfg.trainer.fail_at_step:
        trainer.add_callback(FailAtStep(cfg.trainer.fail_at_step))
    if cfg.trainer.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=cfg.trainer.early_stopping_patience,
                                                   early_stopping_threshold=cfg.trainer.early_stopping_threshold))
    return trainer


def best_and_early(trainer, cfg) -> dict:
    """What metrics.json says about best-checkpoint selection and early stopping."""
    state, t = trainer.state, cfg.trainer
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
    """
    metrics = trainer.evaluate(metric_key_prefix="eval_before")
    model, accelerator = trainer.model, trainer.accelerator
    if trainer.args.world_size > 1 and not trainer.is_fsdp_enabled and getattr(model, "_is_accelerate_prepared", False):
        model._is_accelerate_prepared = False
        accelerator._models = [m for m in accelerator._models if m is not model]
    return metrics


def train(trainer, cfg, resume_from_checkpoint=None):
    """trainer.train(), turning an out-of-memory error into one that says how to make the step fit."""
    try:
        return trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except torch.OutOfMemoryError as e:
        args = trainer.args
        every = (args.gradient_checkpointing_kwargs or {}).get("every_n_layers", 1)
        raise torch.OutOfMemoryError(
            perf.oom_advice(cfg, every_layer_checkpointed=bool(args.gradient_checkpointing) and every == 1)
            + f"\n(original error: {e})") from e


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


def peak_memory_gib() -> float | None:
    if has_cuda():
        return torch.cuda.max_memory_allocated() / 2**30
    return None


def perplexity(loss: float | None) -> float | None:
    return math.exp(loss) if loss is not None and loss < 50 else None
