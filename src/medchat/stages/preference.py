"""What stage=dpo and stage=orpo share (medchat.stages.dpo, .orpo): preference pairs, the SFT run DPO continues,
the model with its adapter inside a TRL preference trainer, and the reward metrics.

DPO with `stage.init_from=RUN` continues that finished run's adapter, opened through medchat.runs (config) and
checked against this base by medchat.run_models (AdapterMismatch, before any weights load); DPOTrainer keeps a frozen
copy of it as the reference model (a second PEFT adapter, "ref"), so DPO's rewards measure movement away from
the SFT model. The run must use the same chat template and prompt format, and no pair may cross its split (a
pair trained on here must not be one of its held-out rows and vice versa), so SFT and SFT+DPO are compared on
the same held-out rows. ORPO (and DPO without init_from) starts from the base model with a fresh LoRA adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from medchat import modeling, run_models, runs, training
from medchat.config import ConfigError
from medchat.data.prepare import conversation_hash, question_hash
from medchat.data.preference import load_pairs, tokenize_pairs
from medchat.rundir import read_status
from medchat.stages.base import StageData, check_beta, check_data_kind, check_starts_from_base

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


def open_init_run(stage_cfg, model_cfg, dataset_cfg, plan) -> InitRun | None:
    """stage.init_from -> the run, checked against this model, prompt format and plan before any weights load."""
    if not stage_cfg.init_from:
        return None
    where = f"stage.init_from={stage_cfg.init_from}"
    try:
        run = runs.open_run(stage_cfg.init_from)
    except FileNotFoundError as e:
        raise ConfigError(f"{where}: {e}") from None
    status = read_status(run.dir)
    if not status or status["state"] != "done":
        raise ConfigError(f"{where}: the run is not finished (status: {status['state'] if status else 'none'}); "
                          "DPO continues a finished run's adapter")
    if run.cfg.stage.name != "sft":
        log.info("%s is a stage=%s run: DPO continues its adapter all the same", where, run.cfg.stage.name)
    # same base by name, every adapter tensor fits it: run_models.AdapterMismatch (a ConfigError) otherwise
    run_models.check_adapter_base(run.adapter, model_cfg, plan.model.path, where="model.name_or_path")
    for key, ours, theirs in (("model.chat_template", model_cfg.chat_template, run.cfg.model.chat_template),
                              ("dataset.prompt_format", dataset_cfg.prompt_format, run.cfg.dataset.prompt_format)):
        if ours != theirs:
            raise ConfigError(f"{key}={ours!r}, but {where} trained with {theirs!r}: DPO would score the adapter "
                              "on prompts rendered differently from the ones it learned")
    why = f" ({where}), so its held-out rows cannot be kept held out"
    return InitRun(run, *run.split_hashes(why), *run.split_questions(why))


def stage_plan(plan, init: InitRun | None):
    """The run plan as a preference stage uses it: a continued adapter keeps its own target modules (lora.*
    does not apply), and the fused LoRA / compile / fixed-shape switches, SFT-only, are off (DPO holds two
    adapters; pairs are padded per batch by TRL's preference collators)."""
    if plan.fused_lora or plan.compile or plan.fixed_shape_tokens:
        log.info("trainer.fused_lora / trainer.compile / trainer.fixed_shape: SFT-only; off for this preference stage")
    targets = tuple(init.run.adapter_targets()) if init is not None else plan.target_modules
    return replace(plan, target_modules=targets, fused_lora=False, compile=False, fixed_shape_tokens=None,
                   compile_reason="SFT-only: off for a preference stage")


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


class PreferenceStage:
    """The stage protocol (medchat.stages.base.Stage) for preference pairs; DPO and ORPO give their TRL config
    (`trainer_config`) and trainer class (`trainer_class`)."""

    name = ""
    pairs = True
    packs = False  # TRL's DPO and ORPO trainers do not pack
    continues_a_run = False  # stage.init_from: continue that SFT run's adapter (DPO)

    def __init__(self, stage_cfg):
        self.cfg = stage_cfg
        self.init: InitRun | None = None

    def check(self, dataset_cfg) -> None:
        check_data_kind(self.cfg, dataset_cfg, pairs=True)
        if not self.continues_a_run:
            check_starts_from_base(self.cfg)
        check_beta(self.cfg)

    def plan(self, plan, model_cfg, dataset_cfg):
        """The SFT run a DPO stage continues, opened and checked against this base before loading; the plan as
        the stage uses it (stage_plan)."""
        self.init = open_init_run(self.cfg, model_cfg, dataset_cfg, plan)
        return stage_plan(plan, self.init)

    def data(self, dataset_cfg, trainer_cfg, tokenizer, cache_dir: Path) -> StageData:
        """Pairs: tokenized (and cut or dropped to fit trainer.max_length, counted) by medchat.data.preference,
        not cached."""
        from medchat.formatting import check_can_tokenize, report_truncation

        split = load_pairs(dataset_cfg)
        if self.init is not None:
            check_pairs_respect_split(self.init, split)
        check_can_tokenize(tokenizer, dataset_cfg.prompt_format)
        datasets, tokenization = {}, {}
        for side in ("train", "eval"):
            records = getattr(split, side)
            if not records:
                datasets[side] = None
                continue
            datasets[side], tokenization[side] = tokenize_pairs(records, tokenizer, dataset_cfg.prompt_format,
                                                                trainer_cfg.max_length, trainer_cfg.truncation)
            report_truncation(f"{side} pair", tokenization[side], trainer_cfg.max_length, trainer_cfg.truncation)
        return StageData(split, datasets["train"], datasets["eval"], tokenization)

    def common_arguments(self, trainer_cfg, tracker_cfg, run_dir: Path, plan, config_class) -> dict:
        if trainer_cfg.packing:
            log.info("trainer.packing: TRL 1.16's DPOTrainer and ORPOTrainer do not pack; pairs are padded per batch")
        return training.training_arguments(trainer_cfg, tracker_cfg, run_dir, plan, config_class)

    def trainer_class(self):
        raise NotImplementedError

    def build(self, plan, lora_cfg, trainer_cfg, tokenizer, data: StageData, args, callbacks) -> tuple:
        """-> (model, trainer): the base as planned with the SFT run's adapter (trainable) or a fresh LoRA one."""
        model = modeling.load_model(plan.model)
        if self.init is None:
            model = modeling.apply_lora(model, modeling.lora_config(lora_cfg, plan.target_modules))
        else:
            log.info("continuing the adapter of %s", self.init.run.dir)
            model = run_models.add_adapter(model, self.init.run.adapter, trainable=True)
        # DPOTrainer copies the adapter into its frozen "ref" adapter and then casts a QLoRA model's trainable
        # weights to bf16. Cast back alone, the policy would start as a bf16-rounded copy of its own reference
        # (measured on the tiny model: reward margin -0.0008 before any step), so the exact weights are restored.
        exact = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        trainer = self.trainer_class()(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                                       processing_class=tokenizer, callbacks=list(callbacks))
        if not plan.fsdp:
            training.keep_adapter_fp32(trainer.model)  # as for SFT (see its docstring)
            for name, param in trainer.model.named_parameters():
                if name in exact:
                    param.data.copy_(exact[name])
        training.add_callbacks(trainer, trainer_cfg)
        return model, trainer

    def held_out(self, trainer, data: StageData, prefix: str) -> dict:
        """Each held-out pair's rewards, for reward accuracy per pair, length-matched and by length ratio."""
        return pair_metrics(trainer, data.eval, prefix)

    def metrics(self, before: dict, after: dict, data: StageData) -> dict:
        """Held-out reward accuracy and margins before and after training, and reward accuracy per pair, on
        length-matched pairs and by length ratio (pair_metrics). `before` may be the first attempt's
        metrics_before.json (a resume)."""
        out = {"stage": self.name, "init_from": str(self.init.run.dir) if self.init else None,
               "beta": float(self.cfg.beta), "packing": False}
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
