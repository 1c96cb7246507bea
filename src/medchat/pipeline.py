"""One training run, top to bottom: `train(cfg)` is what `train.py` calls and what tests call.

Everything that can fail on bad input (config values, data files, columns, LoRA targets, quantization)
is checked before the model's weights are loaded. The run dir is the run's contract with evaluation,
sweeps, reports and export: see README "Run dir".
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from medchat import data, modeling, perf, runrecord, training
from medchat.config import validate
from medchat.data.cache import tokenized

log = logging.getLogger(__name__)




def _run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Train a LoRA adapter as `cfg` says; return the final metrics (also in RUN/metrics.json)."""
    run_dir = Path(run_dir) if run_dir is not None else _run_dir()

    # 1. Everything checkable without weights.
    validate(cfg)
    perf.check_processes_vs_gpus()  # before the distributed setup in sft_config, where two ranks on one GPU hang
    modeling.check_quantization(cfg.quant, cfg.model)
    if cfg.stage.name != "sft":  # DPO / ORPO: the same run dir, tracking and resume, another trainer
        from medchat.stages import train_stage

        return train_stage(cfg, run_dir)
    args = training.sft_config(cfg, run_dir)  # also rejects precision the machine cannot do
    runrecord.claim(run_dir, resume=cfg.trainer.resume)
    split = data.load_split(cfg.dataset)
    path = modeling.model_path(cfg.model)
    target_modules = modeling.resolve_target_modules(cfg.lora, modeling.architecture_linear_names(cfg.model, path))
    tokenizer = modeling.load_tokenizer(cfg.model)
    train_ds, eval_ds, tokenized_cache = tokenized(split, tokenizer, cfg.dataset.prompt_format, cfg.trainer.max_length,
                                                   run_dir, use_cache=cfg.dataset.cache_tokenized,
                                                   num_proc=cfg.dataset.num_proc)

    # 2. The run dir records what is about to happen before the first step (medchat.runrecord).
    def fit(tracker) -> dict:
        metrics = _fit(cfg, run_dir, args, path, target_modules, tokenizer, train_ds, eval_ds, split, tracker)
        return {**metrics, "tokenized_cache": tokenized_cache}

    return runrecord.record_run(cfg, run_dir, split, fit)


def _fit(cfg, run_dir, args, path, target_modules, tokenizer, train_ds, eval_ds, split, tracker) -> dict:
    from transformers import set_seed

    set_seed(cfg.trainer.seed)  # LoRA's A matrices are drawn from the global RNG when the adapter is created
    model = modeling.load_model(cfg.model, cfg.quant, path)
    model = modeling.apply_lora(model, modeling.lora_config(cfg.lora, target_modules))
    from medchat.evaluation.callback import generation_callbacks

    callbacks = generation_callbacks(cfg, tokenizer, split.eval, run_dir)  # [] unless eval.every_steps is set
    trainer = training.build_trainer(cfg, model, tokenizer, train_ds, eval_ds, args, callbacks=callbacks)
    return training.fit(trainer, cfg, run_dir, model, tokenizer, eval_ds is not None, split, target_modules)
