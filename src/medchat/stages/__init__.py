"""Training stages after (or instead of) SFT: DPO and ORPO on preference pairs.

`stage=sft` (the default) is medchat.pipeline's own path. `stage=dpo` and `stage=orpo` come here from the one
dispatch point in `pipeline.train`, and write the same run dir (medchat.runrecord), track and resume the same
way, and are evaluated by evaluate.py unchanged:

- `preference.py`: config -> TRL DPOConfig / ORPOConfig, the model (an SFT run's adapter for DPO's
  `stage.init_from`, else a fresh LoRA adapter), the trainer, and the reward metrics in metrics.json.
- `trainers.py`: TRL's DPOTrainer / ORPOTrainer, fed the token ids medchat made (medchat.data.preference).
"""

from medchat.stages.preference import train as train_stage

__all__ = ["train_stage"]
