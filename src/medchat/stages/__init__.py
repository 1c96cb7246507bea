"""Training stages after (or instead of) SFT: DPO and ORPO on preference pairs.

Every stage runs through `pipeline.train` (checks, run plan, attempt record and resume, tracker,
training.run_trainer, the run dir evaluate.py reads); `stage=sft` (the default) uses SFTTrainer there, and
`stage=dpo` / `stage=orpo` hand in what differs:

- `checks.py`: stage.* checked with the rest of the config, before anything loads.
- `preference.py`: the SFT run DPO continues (opened through medchat.runs), the plan adjustments, TRL's
  DPOConfig / ORPOConfig, the pairs and their tokens, the model and trainer, the reward metrics.
- `trainers.py`: TRL's DPOTrainer / ORPOTrainer, fed the token ids medchat made (medchat.data.preference).
"""
