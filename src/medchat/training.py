"""Config -> TRL SFTConfig and SFTTrainer, plus the callbacks medchat adds."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import TrainerCallback

from medchat.modeling import has_cuda, precision_flags


def optimizer_name(optim: str) -> str:
    if optim != "auto":
        return optim
    return "adamw_torch_fused" if has_cuda() else "adamw_torch"


def report_to(backend: str) -> list[str]:
    return {"wandb": ["wandb"], "tensorboard": ["tensorboard"], "none": []}[backend]


def sft_config(cfg, run_dir: Path):
    """cfg.trainer (+ tracker) -> trl.SFTConfig. Keys pass through under their SFTConfig names."""
    from trl import SFTConfig

    t = cfg.trainer
    eval_on = t.eval_strategy != "no"
    return SFTConfig(
        output_dir=str(run_dir / "checkpoints"),
        run_name=cfg.tracker.name or run_dir.name,
        num_train_epochs=float(t.num_train_epochs),
        max_steps=int(t.max_steps),
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=float(t.learning_rate),
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=float(t.warmup_steps),
        weight_decay=float(t.weight_decay),
        max_grad_norm=float(t.max_grad_norm),
        optim=optimizer_name(t.optim),
        logging_steps=t.logging_steps,
        eval_strategy=t.eval_strategy,
        eval_steps=(t.eval_steps or t.logging_steps) if eval_on else None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        **precision_flags(t.precision),
        use_cpu=not has_cuda(),
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy=t.train_sampling_strategy,
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
    keep_adapter_fp32(trainer.model)
    if cfg.trainer.fail_at_step:
        trainer.add_callback(FailAtStep(cfg.trainer.fail_at_step))
    return trainer


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
