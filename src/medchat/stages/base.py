"""The protocol every training stage implements (medchat.stages.sft, .dpo, .orpo), and what its parts share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medchat.config import ConfigError


@dataclass
class StageData:
    """A stage's rows: the split (what split.json and eval.jsonl record), the tokenized train and eval sets,
    what was cut or dropped to fit trainer.max_length per side, and the tokenized cache's record (None: not
    cached)."""

    split: Any  # medchat.data.prepare.Split
    train: Any  # datasets.Dataset
    eval: Any | None
    tokenization: dict
    cache: dict | None = None

    @property
    def counts(self) -> dict:
        return self.split.counts if self.split is not None else {}


class Stage(Protocol):
    """One training stage. Constructed from the config's `stage` section; `pipeline.train` calls these in order,
    each with the sections it needs, and never asks which stage it holds."""

    name: str
    pairs: bool  # its rows are preference pairs (chosen/rejected), not conversations
    packs: bool  # its TRL trainer packs rows when trainer.packing asks (SFT); DPO's and ORPO's do not

    def check(self, dataset_cfg) -> None:
        """stage.* against dataset.*; raise ConfigError naming the key. No model, no data."""

    def plan(self, plan, model_cfg, dataset_cfg):
        """The run plan (medchat.plan.RunPlan) as this stage uses it."""

    def data(self, dataset_cfg, trainer_cfg, tokenizer, cache_dir: Path) -> StageData:
        """Its rows, tokenized and fitted to trainer.max_length (counted)."""

    def trainer_config(self, trainer_cfg, tracker_cfg, run_dir: Path, plan):
        """Its TRL config (a TrainingArguments)."""

    def build(self, plan, lora_cfg, trainer_cfg, tokenizer, data: StageData, args, callbacks) -> tuple:
        """-> (model, trainer): the base as planned with its adapter, inside its TRL trainer."""

    def held_out(self, trainer, data: StageData, prefix: str) -> dict:
        """What it measures on the held-out rows beside the trainer's evaluation, before and after training
        (keys start with `prefix`)."""

    def metrics(self, before: dict, after: dict, data: StageData) -> dict:
        """What metrics.json adds for this stage, from the held-out metrics before and after training."""


def check_data_kind(stage_cfg, dataset_cfg, *, pairs: bool) -> None:
    """Every stage: its kind of rows (preference pairs or conversations) is the dataset's, mixtures are SFT
    conversations only, stage.beta > 0."""
    if pairs and dataset_cfg.schema != "preference":
        raise ConfigError(f"stage={stage_cfg.name} trains on preference pairs: set dataset.schema=preference "
                          f"(got {dataset_cfg.schema!r}); make pairs with `python -m medchat.make_pairs`")
    if not pairs and dataset_cfg.schema == "preference":
        raise ConfigError("dataset.schema=preference holds pairs for stage=dpo or stage=orpo, not stage=sft")
    if dataset_cfg.sources and (pairs or any(s.schema == "preference" for s in dataset_cfg.sources)):
        raise ConfigError("dataset.sources mixes SFT conversations; preference pairs come from one dataset.path")


def check_starts_from_base(stage_cfg) -> None:
    """stage.init_from is DPO's alone."""
    if stage_cfg.init_from is not None:
        raise ConfigError(f"stage.init_from is for stage=dpo (continuing an SFT run); stage={stage_cfg.name} "
                          "starts from the base model: remove stage.init_from")


def check_beta(stage_cfg) -> None:
    if stage_cfg.beta <= 0:
        raise ConfigError(f"stage.beta must be > 0, got {stage_cfg.beta}")
