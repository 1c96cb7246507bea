"""stage=sft (the default): supervised fine-tuning on conversations, the loss on the doctor's turns only.

Its rows come from medchat.data (read, cleaned, split) through the tokenized cache (medchat.data.cache, in the
directory the run plan chose); its trainer is TRL's SFTTrainer with medchat's token-weighted held-out loss
(medchat.training), packed per document when trainer.packing is on.
"""

from __future__ import annotations

from pathlib import Path

from medchat import data, modeling, training
from medchat.data.cache import tokenized
from medchat.evaluation.perplexity import PERPLEXITY_DEFINITION
from medchat.stages.base import StageData, check_beta, check_data_kind, check_starts_from_base


class SFT:
    name = "sft"
    pairs = False
    packs = True

    def __init__(self, stage_cfg):
        self.cfg = stage_cfg

    def check(self, dataset_cfg) -> None:
        check_data_kind(self.cfg, dataset_cfg, pairs=False)
        check_starts_from_base(self.cfg)
        check_beta(self.cfg)

    def plan(self, plan, model_cfg, dataset_cfg):
        return plan

    def data(self, dataset_cfg, trainer_cfg, tokenizer, cache_dir: Path) -> StageData:
        split = data.load_split(dataset_cfg)
        # rows over trainer.max_length are cut or dropped and counted there, cached or not
        train_ds, eval_ds, tokenization, cache = tokenized(
            split, tokenizer, dataset_cfg.prompt_format, trainer_cfg.max_length, cache_dir,
            truncation=trainer_cfg.truncation, use_cache=dataset_cfg.cache_tokenized, num_proc=dataset_cfg.num_proc)
        return StageData(split, train_ds, eval_ds, tokenization, cache)

    def trainer_config(self, trainer_cfg, tracker_cfg, run_dir: Path, plan):
        return training.sft_config(trainer_cfg, tracker_cfg, run_dir, plan)

    def build(self, plan, lora_cfg, trainer_cfg, tokenizer, data: StageData, args, callbacks) -> tuple:
        model = modeling.load_model(plan.model)
        model = modeling.apply_lora(model, modeling.lora_config(lora_cfg, plan.target_modules))
        trainer = training.build_trainer(trainer_cfg, plan, model, tokenizer, data.train, data.eval, args,
                                         callbacks=callbacks)
        return model, trainer

    def held_out(self, trainer, data: StageData, prefix: str) -> dict:
        return {}  # the token-weighted held-out loss is the trainer's own evaluation (sft_trainer.TokenWeightedEvalLoss)

    def metrics(self, before: dict, after: dict, data: StageData) -> dict:
        if data.eval is None:
            return {}
        # the same definition, and the same name, as evaluate.py's reference perplexity (token-weighted)
        return {"perplexity_definition": PERPLEXITY_DEFINITION, "eval_scored_tokens": after.get("eval_scored_tokens")}
