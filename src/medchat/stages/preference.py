"""stage=dpo and stage=orpo: the parts of a preference run that differ from SFT, called by pipeline.train.

pipeline.train runs every stage the same way (config checks, the run plan, the attempt record and resume,
the tracker, training.run_trainer, the adapter saved atomically, metrics.json); this module supplies what a
preference stage does instead: the SFT run it continues, its plan adjustments, its TRL config, its data and
its trainer, and its reward metrics.

DPO with `stage.init_from=RUN` continues that finished run's adapter, opened through medchat.runs (config,
AdapterMismatch check of the adapter against this base, before any weights load); DPOTrainer keeps a frozen
copy of it as the reference model (a second PEFT adapter, "ref"), so DPO's rewards measure movement away from
the SFT model. The run must use the same chat template and prompt format, and no pair may cross its split (a
pair trained on here must not be one of its held-out rows and vice versa), so SFT and SFT+DPO are compared on
the same held-out rows. ORPO (and DPO without init_from) starts from the base model with a fresh LoRA adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from medchat import modeling, runs, training
from medchat.config import ConfigError
from medchat.data.prepare import conversation_hash, question_hash
from medchat.data.preference import load_pairs, tokenize_pairs
from medchat.rundir import read_status

log = logging.getLogger(__name__)

# DPOTrainer / ORPOTrainer eval keys -> metrics.json names (both trainers log these under the same names)
REWARD_KEYS = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
               "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
               "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected"}
# Reward accuracy by chosen/rejected length ratio (scored tokens of each answer): a pair inside [0.8, 1.25] is
# "length-matched", where a preference learned from answer length alone cannot show as accuracy. Bins, by ratio:
# < 0.5, [0.5, 0.8), [0.8, 1.25], (1.25, 2], > 2 (ratios compared exactly, in integers).
LENGTH_RATIO_BINS = ("<0.5", "0.5-0.8", "0.8-1.25", "1.25-2", ">2")


def length_ratio_bin(chosen: int, rejected: int) -> str:
    """The LENGTH_RATIO_BINS name of chosen/rejected (token counts, both > 0)."""
    if 2 * chosen < rejected:
        return "<0.5"
    if 5 * chosen < 4 * rejected:
        return "0.5-0.8"
    if 4 * chosen <= 5 * rejected:
        return "0.8-1.25"
    return "1.25-2" if chosen <= 2 * rejected else ">2"


def pair_reward_metrics(rewards: list[tuple[float, float]], lengths: list[tuple[int, int]]) -> dict:
    """Per-pair reward accuracy (chosen reward > rejected), overall, on length-matched pairs, and per length-ratio
    bin; accuracy is None where a bin holds no pair."""
    def accuracy(idx):
        return sum(rewards[i][0] > rewards[i][1] for i in idx) / len(idx) if idx else None

    bins = [length_ratio_bin(c, r) for c, r in lengths]
    by_bin = {b: [i for i, x in enumerate(bins) if x == b] for b in LENGTH_RATIO_BINS}
    return {"reward_accuracy_per_pair": accuracy(range(len(rewards))), "pairs": len(rewards),
            "reward_accuracy_length_matched": accuracy(by_bin["0.8-1.25"]),
            "length_matched_pairs": len(by_bin["0.8-1.25"]),
            "reward_accuracy_by_length_ratio": {b: {"pairs": len(idx), "reward_accuracy": accuracy(idx)}
                                                for b, idx in by_bin.items()}}


def pair_metrics(trainer, eval_ds, prefix: str) -> dict:
    """{prefix + "pairs": pair_reward_metrics of the trainer's held-out pairs now} (prefix: eval_before_ / eval_)."""
    lengths = [(len(c), len(r)) for c, r in zip(eval_ds["chosen_ids"], eval_ds["rejected_ids"])]
    return {f"{prefix}pairs": pair_reward_metrics(trainer.pair_rewards(), lengths)}


@dataclass(frozen=True)
class InitRun:
    """The finished SFT run a DPO stage continues, and the hashes of both sides of its split: whole
    conversations, and normalised questions (empty for runs whose split.json predates them)."""

    run: runs.Run
    train_hashes: frozenset
    eval_hashes: frozenset
    train_questions: frozenset = frozenset()
    eval_questions: frozenset = frozenset()


def open_init_run(cfg, plan) -> InitRun | None:
    """stage.init_from -> the run, checked against this config and plan before any weights load."""
    if not cfg.stage.init_from:
        return None
    where = f"stage.init_from={cfg.stage.init_from}"
    try:
        run = runs.open_run(cfg.stage.init_from)
    except FileNotFoundError as e:
        raise ConfigError(f"{where}: {e}") from None
    status = read_status(run.dir)
    if not status or status["state"] != "done":
        raise ConfigError(f"{where}: the run is not finished (status: {status['state'] if status else 'none'}); "
                          "DPO continues a finished run's adapter")
    if run.cfg.stage.name != "sft":
        log.info("%s is a stage=%s run: DPO continues its adapter all the same", where, run.cfg.stage.name)
    # same base by name, every adapter tensor fits it: runs.AdapterMismatch (a ConfigError) otherwise
    runs.check_adapter_base(run.adapter, cfg.model, plan.model.path, where="model.name_or_path")
    for key, ours, theirs in (("model.chat_template", cfg.model.chat_template, run.cfg.model.chat_template),
                              ("dataset.prompt_format", cfg.dataset.prompt_format, run.cfg.dataset.prompt_format)):
        if ours != theirs:
            raise ConfigError(f"{key}={ours!r}, but {where} trained with {theirs!r}: DPO would score the adapter "
                              "on prompts rendered differently from the ones it learned")
    why = f" ({where}), so its held-out rows cannot be kept held out"
    return InitRun(run, *run.split_hashes(why), *run.split_questions(why))


def stage_plan(plan, init: InitRun | None):
    """The run plan as a preference stage uses it: a continued adapter keeps its own target modules (lora.*
    does not apply), and issue 13's fused LoRA / compile switches, SFT-only, are off (DPO holds two adapters)."""
    if plan.fused_lora or plan.compile:
        log.info("trainer.fused_lora / trainer.compile: SFT-only; off for this preference stage")
    targets = tuple(init.run.adapter_targets()) if init is not None else plan.target_modules
    return replace(plan, target_modules=targets, fused_lora=False, compile=False)


def trainer_config(cfg, run_dir, plan):
    """cfg.trainer + cfg.stage + the plan -> trl.DPOConfig or trl.experimental.orpo.ORPOConfig (TRL names)."""
    s = cfg.stage
    if cfg.trainer.packing:
        log.info("trainer.packing: TRL 1.16's DPOTrainer and ORPOTrainer do not pack; pairs are padded per batch")
    if s.name == "dpo":
        from trl import DPOConfig

        return DPOConfig(
            **training.training_arguments(cfg, run_dir, plan, DPOConfig),
            beta=float(s.beta),
            loss_type=[str(t) for t in s.loss_type],
            loss_weights=[float(w) for w in s.loss_weights] if s.loss_weights is not None else None,
            label_smoothing=float(s.label_smoothing),
            use_weighting=bool(s.use_weighting),
            ld_alpha=float(s.ld_alpha) if s.ld_alpha is not None else None,
            precompute_ref_log_probs=bool(s.precompute_ref_log_probs),
        )
    from trl.experimental.orpo import ORPOConfig

    common = training.training_arguments(cfg, run_dir, plan, ORPOConfig)
    # ORPO's batches have no `input_ids` (chosen_/rejected_input_ids), so the Trainer cannot count tokens
    common["include_num_input_tokens_seen"] = "no"
    if common.pop("activation_offloading"):
        raise ConfigError("trainer.activation_offloading: ORPOConfig (TRL 1.16) has no activation offloading; "
                          "set trainer.activation_offloading=false or use stage=dpo")
    return ORPOConfig(**common, beta=float(s.beta))


def check_pairs_respect_split(init: InitRun, split) -> None:
    """Pairs made from the SFT run's rows must stay on the side of the split those rows were on: compared by
    conversation and by normalised question (another system prompt or answer is still the same question)."""
    for side, records, forbidden, questions, what in (
            ("train", split.train, init.eval_hashes, init.eval_questions, "held out"),
            ("eval", split.eval, init.train_hashes, init.train_questions, "trained on")):
        for r in records:
            if conversation_hash(r) in forbidden or question_hash(r) in questions:
                raise ConfigError(
                    f"pair id {r['id']} (row {r['row']}) is on the {side} side here but is a row stage.init_from="
                    f"{init.run.dir} {what}: make pairs with `python -m medchat.make_pairs run_dir={init.run.dir}`, "
                    "which keeps each row on its side")


def load_data(cfg, tokenizer, init: InitRun | None):
    """-> (split, train dataset, eval dataset or None, {"train": counts, "eval": counts} of what was cut or
    dropped to fit trainer.max_length): the counterpart of data.load_split + data.cache.tokenized."""
    from medchat.formatting import check_can_tokenize, report_truncation

    split = load_pairs(cfg.dataset)
    if init is not None:
        check_pairs_respect_split(init, split)
    check_can_tokenize(tokenizer, cfg.dataset.prompt_format)
    datasets, tokenization = {}, {}
    for side in ("train", "eval"):
        records = getattr(split, side)
        if not records:
            datasets[side] = None
            continue
        datasets[side], tokenization[side] = tokenize_pairs(records, tokenizer, cfg.dataset.prompt_format,
                                                            cfg.trainer.max_length, cfg.trainer.truncation)
        report_truncation(f"{side} pair", tokenization[side], cfg.trainer.max_length, cfg.trainer.truncation)
    return split, datasets["train"], datasets["eval"], tokenization


def build(cfg, plan, init: InitRun | None, tokenizer, train_ds, eval_ds, args, callbacks):
    """-> (model, trainer): the base as planned with the SFT run's adapter (trainable) or a fresh LoRA one."""
    from medchat.stages.trainers import MedchatDPOTrainer, MedchatORPOTrainer

    model = modeling.load_model(plan.model)
    if init is None:
        model = modeling.apply_lora(model, modeling.lora_config(cfg.lora, plan.target_modules))
    else:
        log.info("continuing the adapter of %s", init.run.dir)
        model = runs.add_adapter(model, init.run.adapter, trainable=True)
    # DPOTrainer copies the adapter into its frozen "ref" adapter and then casts a QLoRA model's trainable
    # weights to bf16. Cast back alone, the policy would start as a bf16-rounded copy of its own reference
    # (measured on the tiny model: reward margin -0.0008 before any step), so the exact weights are restored.
    exact = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer_class = MedchatDPOTrainer if cfg.stage.name == "dpo" else MedchatORPOTrainer
    trainer = trainer_class(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                            processing_class=tokenizer, callbacks=list(callbacks))
    if not plan.fsdp:
        training.keep_adapter_fp32(trainer.model)  # as for SFT (see its docstring)
        for name, param in trainer.model.named_parameters():
            if name in exact:
                param.data.copy_(exact[name])
    training.add_callbacks(trainer, cfg)
    return model, trainer


def stage_metrics(cfg, init: InitRun | None, before: dict, after: dict) -> dict:
    """What metrics.json (and the W&B summary) add for a preference stage: held-out reward accuracy and margins
    before and after training, and reward accuracy per pair, on length-matched pairs and by length ratio
    (pair_metrics). `before` may be the first attempt's metrics_before.json (a resume)."""
    out = {"stage": cfg.stage.name, "init_from": str(init.run.dir) if init else None,
           "beta": float(cfg.stage.beta), "packing": False}
    for key, name in REWARD_KEYS.items():
        out[f"{name}_before"] = before.get(f"eval_before_{key}", before.get(f"eval_{key}"))
        out[f"{name}_after"] = after.get(f"eval_{key}")
    # per pair (TRL's reward_accuracy_* above is a mean of batch means), length-matched and by length ratio
    for when, pairs in (("before", before.get("eval_before_pairs")), ("after", after.get("eval_pairs"))):
        for key, value in (pairs or {}).items():
            if key in ("pairs", "length_matched_pairs"):
                out[key] = value
            else:
                out[f"{key}_{when}"] = value
    return out
