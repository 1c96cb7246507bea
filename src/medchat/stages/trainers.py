"""TRL's DPOTrainer and ORPOTrainer, given rows medchat already tokenized.

medchat.data.preference renders prompts and answers with the same chat template (or plain format) and the same
loss span as SFT, so the trainers' own tokenization is bypassed: DPO's `_prepare_dataset` and ORPO's
`tokenize_row` only reshape `prompt_ids` / `chosen_ids` / `rejected_ids`. Both hooks are private TRL methods
(checked against TRL 1.16, where ORPO lives in `trl.experimental.orpo`); tests/test_stages.py fails if they move.

`pair_rewards()` gives each held-out pair's chosen and rejected reward as the trainer itself defines it (TRL
logs only batch means): each pair is scored alone, through the trainer's own collator and loss code, so the
per-pair numbers are TRL's reward for that pair (whatever loss_type, ld_alpha or f-divergence the stage uses).
"""

from __future__ import annotations

import torch
from trl import DPOTrainer
from trl.experimental.orpo import ORPOTrainer

TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


class _PairRewards:
    def pair_rewards(self) -> list[tuple[float, float]]:
        """[(chosen reward, rejected reward)] for every pair of the eval dataset, in its order."""
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            with torch.no_grad():
                for row in self.eval_dataset:
                    out.append(self._one_pair_rewards(self._prepare_inputs(self.data_collator([row]))))
        finally:
            self.model.train(was_training)
        return out


class MedchatDPOTrainer(_PairRewards, DPOTrainer):
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        missing = [c for c in TOKEN_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{dataset_name} pairs lack {missing}: tokenize them with medchat.data.preference")
        return dataset  # DataCollatorForPreference builds prompt+answer and the completion mask from these

    def _one_pair_rewards(self, inputs) -> tuple[float, float]:
        # _compute_loss appends this batch's (= this pair's) means to the eval metrics; read them, then take
        # them out again so the trainer's own logged eval metrics stay as they were
        metrics = self._metrics["eval"]
        sizes = {k: len(v) for k, v in metrics.items()}
        self._compute_loss(self.model, inputs, return_outputs=False)
        rewards = metrics["rewards/chosen"][-1], metrics["rewards/rejected"][-1]
        for key in list(metrics):
            del metrics[key][sizes.get(key, 0):]
        return rewards


class MedchatORPOTrainer(_PairRewards, ORPOTrainer):
    def _one_pair_rewards(self, inputs) -> tuple[float, float]:
        metrics = self.get_batch_loss_metrics(self.model, inputs, train_eval="eval")[1]  # stored by its caller only
        return metrics["eval_rewards/chosen"], metrics["eval_rewards/rejected"]

    def tokenize_row(self, feature, model=None) -> dict:
        prompt = list(feature["prompt_ids"])
        batch = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
        for side in ("chosen", "rejected"):
            answer = list(feature[f"{side}_ids"])
            batch[f"{side}_input_ids"] = prompt + answer
            batch[f"{side}_attention_mask"] = [1] * (len(prompt) + len(answer))
            batch[f"{side}_labels"] = [-100] * len(prompt) + answer  # loss on the answer only, as in SFT
        return batch
