"""Training stages: `sft` (the default), `dpo` and `orpo`, one module each, behind one protocol.

Every stage runs through `pipeline.train` (config checks, the run plan, the attempt record and resume, the
tracker, `pipeline.fit`: the trainer run, the adapter saved atomically, metrics.json); a stage supplies what
it alone decides (medchat.stages.base.Stage):

- `check`: stage.* against the dataset section, before anything loads (right after config_checks.validate, in
  train, `python -m medchat.plan`, medchat.inspect and the sweep launcher's per-job check);
- `plan`: how it changes the run plan (DPO: the SFT run it continues keeps its own LoRA targets);
- `data`: its rows, tokenized (SFT: conversations through the tokenized cache; DPO/ORPO: pairs);
- `trainer_config` and `build`: its TRL config, and the model with its adapter inside its TRL trainer;
- `metrics`: what it adds to metrics.json.

`sft.py`, `dpo.py`, `orpo.py`: the stages; `preference.py`: what DPO and ORPO share (the pairs, the SFT run
DPO continues, the reward metrics); `trainers.py`: TRL's DPOTrainer / ORPOTrainer fed medchat's token ids. A
new stage (KTO, GRPO) is one module here, one line in STAGES, and one config file (conf/stage/).
"""

from __future__ import annotations

import importlib

# stage.name -> "module:class" of the stage (imported when a run asks for it)
STAGES = {"sft": "medchat.stages.sft:SFT", "dpo": "medchat.stages.dpo:DPO", "orpo": "medchat.stages.orpo:ORPO"}


def stage_for(stage_cfg):
    """The config's `stage` section -> its medchat.stages.base.Stage."""
    module, name = STAGES[stage_cfg.name].split(":")
    return getattr(importlib.import_module(module), name)(stage_cfg)
