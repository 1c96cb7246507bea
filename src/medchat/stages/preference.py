"""stage=dpo and stage=orpo: one preference-tuning run, top to bottom (the counterpart of pipeline.train).

DPO with `stage.init_from=RUN` continues that finished run's adapter; DPOTrainer keeps a frozen copy of it as
the reference model (a second PEFT adapter, "ref"), so DPO's rewards measure movement away from the SFT model.
Before any weights load, the run is checked: finished, its adapter fits this base, the same chat template and
prompt format, and no pair crosses its split (a pair trained on here must not be one of its held-out rows, and
a held-out pair must not be one of its training rows), so SFT and SFT+DPO can be compared on the same rows.
ORPO starts from the base model with a fresh LoRA adapter and needs no reference model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from medchat import modeling, perf, rundir, runrecord, training
from medchat.config import ConfigError
from medchat.data.prepare import conversation_hash
from medchat.data.preference import load_pairs, tokenize_pairs

log = logging.getLogger(__name__)

# DPOTrainer / ORPOTrainer eval keys -> metrics.json names (both trainers log these under the same names)
REWARD_KEYS = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
               "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
               "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected"}


@dataclass(frozen=True)
class InitRun:
    """The finished SFT run a DPO stage continues."""

    run_dir: Path
    adapter: Path
    train_hashes: frozenset
    eval_hashes: frozenset


def open_init_run(cfg, path: str) -> InitRun:
    """stage.init_from -> the run, checked against this config before any weights load."""
    from medchat.evaluation import loading

    run_dir = Path(cfg.stage.init_from)
    if not run_dir.is_dir():
        raise ConfigError(f"stage.init_from={run_dir}: no such run dir")
    status = rundir.read_status(run_dir)
    if not status or status["state"] != "done":
        raise ConfigError(f"stage.init_from={run_dir}: the run is not finished (status: "
                          f"{status['state'] if status else 'none'}); DPO continues a finished run's adapter")
    run_cfg = loading.read_run_config(run_dir)
    adapter = loading.adapter_dir(run_dir)
    loading.check_adapter_base(adapter, cfg.model, path)  # same base by name, every tensor fits: ConfigError
    for key, ours, theirs in (("model.chat_template", cfg.model.chat_template, run_cfg.model.chat_template),
                              ("dataset.prompt_format", cfg.dataset.prompt_format, run_cfg.dataset.prompt_format)):
        if ours != theirs:
            raise ConfigError(f"{key}={ours!r}, but stage.init_from={run_dir} trained with {theirs!r}: DPO would "
                              "score the adapter on prompts rendered differently from the ones it learned")
    manifest = json.loads((run_dir / "split.json").read_text())
    return InitRun(run_dir, adapter, frozenset(r["hash"] for r in manifest["train"]),
                   frozenset(r["hash"] for r in manifest["eval"]))


def check_pairs_respect_split(init: InitRun, split) -> None:
    """Pairs made from the SFT run's rows must stay on the side of the split those rows were on."""
    for side, records, forbidden, what in (("train", split.train, init.eval_hashes, "held out"),
                                           ("eval", split.eval, init.train_hashes, "trained on")):
        for r in records:
            if conversation_hash(r) in forbidden:
                raise ConfigError(
                    f"pair id {r['id']} (row {r['row']}) is on the {side} side here but is a row stage.init_from="
                    f"{init.run_dir} {what}: make pairs with `python -m medchat.make_pairs run_dir={init.run_dir}`, "
                    "which keeps each row on its side")


def preference_config(cfg, run_dir: Path):
    """cfg.trainer + cfg.stage -> trl.DPOConfig or trl.experimental.orpo.ORPOConfig (stage keys under TRL names)."""
    s = cfg.stage
    if s.name == "dpo":
        from trl import DPOConfig

        return DPOConfig(
            **training.training_arguments(cfg, run_dir, DPOConfig),
            beta=float(s.beta),
            loss_type=[str(t) for t in s.loss_type],
            loss_weights=[float(w) for w in s.loss_weights] if s.loss_weights is not None else None,
            label_smoothing=float(s.label_smoothing),
            use_weighting=bool(s.use_weighting),
            ld_alpha=float(s.ld_alpha) if s.ld_alpha is not None else None,
            precompute_ref_log_probs=bool(s.precompute_ref_log_probs),
        )
    from trl.experimental.orpo import ORPOConfig

    common = training.training_arguments(cfg, run_dir, ORPOConfig)
    # ORPO's batches have no `input_ids` (chosen_/rejected_input_ids), so the Trainer cannot count tokens
    common["include_num_input_tokens_seen"] = "no"
    if common.pop("activation_offloading"):
        raise ConfigError("trainer.activation_offloading: ORPOConfig (TRL 1.16) has no activation offloading; "
                          "set trainer.activation_offloading=false or use stage=dpo")
    return ORPOConfig(**common, beta=float(s.beta))


def reward_summary(before: dict, after: dict) -> dict:
    """Held-out reward accuracy and margins before and after training (metrics.json, W&B summary)."""
    out = {}
    for key, name in REWARD_KEYS.items():
        out[f"{name}_before"] = before.get(f"eval_{key}")
        out[f"{name}_after"] = after.get(f"eval_{key}")
    return out


def _adapter_targets(adapter: Path) -> list[str]:
    targets = json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    return [targets] if isinstance(targets, str) else sorted(targets)  # PEFT saves a list, or one regex


def train(cfg, run_dir: Path) -> dict:
    """Train a DPO or ORPO adapter as `cfg` says (validated by pipeline.train); return the final metrics."""
    path = modeling.model_path(cfg.model)
    init = open_init_run(cfg, path) if cfg.stage.init_from else None
    args = preference_config(cfg, run_dir)  # also rejects precision the machine cannot do
    if cfg.trainer.packing:
        log.info("trainer.packing: TRL 1.16's DPOTrainer and ORPOTrainer do not pack; pairs are padded per batch")
    runrecord.claim(run_dir, resume=cfg.trainer.resume)
    split = load_pairs(cfg.dataset)
    if init is not None:
        check_pairs_respect_split(init, split)
        target_modules = _adapter_targets(init.adapter)  # the adapter defines them; lora.* does not apply
    else:
        names = modeling.architecture_linear_names(cfg.model, path)
        target_modules = modeling.resolve_target_modules(cfg.lora, names)
    tokenizer = modeling.load_tokenizer(cfg.model)
    for side in ("train", "eval"):  # what did not fit trainer.max_length, per side, into metrics.json's data
        counts: dict = {}
        ds = tokenize_pairs(getattr(split, side), tokenizer, cfg.dataset.prompt_format, cfg.trainer.max_length,
                            counts) if getattr(split, side) else None
        split.counts.update({f"{side}_{k}": v for k, v in counts.items()})
        if side == "train":
            train_ds = ds
        else:
            eval_ds = ds
    return runrecord.record_run(cfg, run_dir, split, lambda tracker: _fit(
        cfg, run_dir, args, path, init, target_modules, tokenizer, train_ds, eval_ds, split))


def _model(cfg, path: str, init: InitRun | None, target_modules: list[str]):
    from transformers import set_seed

    set_seed(cfg.trainer.seed)  # a fresh adapter's A matrices come from the global RNG
    model = modeling.load_model(cfg.model, cfg.quant, path)
    if init is None:
        return modeling.apply_lora(model, modeling.lora_config(cfg.lora, target_modules))
    from peft import PeftModel

    log.info("continuing the adapter of %s", init.run_dir)
    return PeftModel.from_pretrained(model, str(init.adapter), is_trainable=True)


def _fit(cfg, run_dir, args, path, init, target_modules, tokenizer, train_ds, eval_ds, split) -> dict:
    from medchat.evaluation.callback import generation_callbacks
    from medchat.stages.trainers import MedchatDPOTrainer, MedchatORPOTrainer

    model = _model(cfg, path, init, target_modules)
    # DPOTrainer copies the adapter into its frozen "ref" adapter and then casts a QLoRA model's trainable
    # weights to bf16. Cast back alone, the policy would start as a bf16-rounded copy of its own reference
    # (measured on the tiny model: reward margin -0.0008 before any step), so the exact weights are restored.
    exact = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer_class = MedchatDPOTrainer if cfg.stage.name == "dpo" else MedchatORPOTrainer
    trainer = trainer_class(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tokenizer,
        callbacks=generation_callbacks(cfg, tokenizer, split.eval, run_dir),  # [] unless eval.every_steps is set
    )
    if not perf.fsdp_enabled():
        training.keep_adapter_fp32(trainer.model)  # TRL casts QLoRA adapters to bf16; see its docstring
        for name, param in trainer.model.named_parameters():
            if name in exact:
                param.data.copy_(exact[name])
    training.add_callbacks(trainer, cfg)  # (medchat.speed's fused LoRA is SFT-only: DPO holds two adapters)
    metrics = training.fit(trainer, cfg, run_dir, model, tokenizer, eval_ds is not None, split, target_modules,
                           summarise=reward_summary)
    metrics.update(stage=cfg.stage.name, init_from=str(init.run_dir) if init else None,
                   beta=float(cfg.stage.beta), packing=False)
    return metrics
