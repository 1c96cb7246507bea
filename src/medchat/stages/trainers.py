"""TRL's DPOTrainer and ORPOTrainer, given rows medchat already tokenized.

medchat.data.preference renders prompts and answers with the same chat template (or plain format) and the same
loss span as SFT, so the trainers' own tokenization is bypassed: DPO's `_prepare_dataset` and ORPO's
`tokenize_row` only reshape `prompt_ids` / `chosen_ids` / `rejected_ids`. Both hooks are private TRL methods
(checked against TRL 1.16, where ORPO lives in `trl.experimental.orpo`); tests/test_stages.py fails if they move.
"""

from __future__ import annotations

from trl import DPOTrainer
from trl.experimental.orpo import ORPOTrainer

TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


class MedchatDPOTrainer(DPOTrainer):
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        missing = [c for c in TOKEN_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{dataset_name} pairs lack {missing}: tokenize them with medchat.data.preference")
        return dataset  # DataCollatorForPreference builds prompt+answer and the completion mask from these


class MedchatORPOTrainer(ORPOTrainer):
    def tokenize_row(self, feature, model=None) -> dict:
        prompt = list(feature["prompt_ids"])
        batch = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
        for side in ("chosen", "rejected"):
            answer = list(feature[f"{side}_ids"])
            batch[f"{side}_input_ids"] = prompt + answer
            batch[f"{side}_attention_mask"] = [1] * (len(prompt) + len(answer))
            batch[f"{side}_labels"] = [-100] * len(prompt) + answer  # loss on the answer only, as in SFT
        return batch
