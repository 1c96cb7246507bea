"""Checks of `stage.*` that need no model or data, part of medchat.config_checks.validate (so train.py, the
sweep launcher's per-job check and `python -m medchat.plan` all run them). Kept beside the stages; every
message names the key.
"""

from __future__ import annotations

from typing import Any

from medchat.config import ConfigError

PREFERENCE_STAGES = ("dpo", "orpo")
# DPOConfig.loss_type values in TRL 1.16 (its docstring); tests/test_stages.py checks them against TRL's own list.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


def validate_stage(cfg: Any) -> None:
    """stage.* against the dataset and each other: preference stages need preference pairs, and vice versa."""
    stage = cfg.stage
    preference = stage.name in PREFERENCE_STAGES
    if preference and cfg.dataset.schema != "preference":
        raise ConfigError(f"stage={stage.name} trains on preference pairs: set dataset.schema=preference "
                          f"(got {cfg.dataset.schema!r}); make pairs with `python -m medchat.make_pairs`")
    if not preference and cfg.dataset.schema == "preference":
        raise ConfigError("dataset.schema=preference holds pairs for stage=dpo or stage=orpo, not stage=sft")
    if cfg.dataset.sources and (preference or any(s.schema == "preference" for s in cfg.dataset.sources)):
        raise ConfigError("dataset.sources mixes SFT conversations; preference pairs come from one dataset.path")
    if stage.init_from is not None and stage.name != "dpo":
        raise ConfigError(f"stage.init_from is for stage=dpo (continuing an SFT run); stage={stage.name} "
                          "starts from the base model: remove stage.init_from")
    if stage.beta <= 0:
        raise ConfigError(f"stage.beta must be > 0, got {stage.beta}")
    if stage.name == "dpo":
        unknown = [t for t in stage.loss_type if t not in DPO_LOSS_TYPES]
        if not stage.loss_type or unknown:
            raise ConfigError(f"stage.loss_type: unknown {', '.join(unknown) or '(empty)'}; "
                              f"TRL's DPO losses are {', '.join(DPO_LOSS_TYPES)}")
        if stage.loss_weights is not None and len(stage.loss_weights) != len(stage.loss_type):
            raise ConfigError(f"stage.loss_weights has {len(stage.loss_weights)} weights for "
                              f"{len(stage.loss_type)} stage.loss_type entries")
        if stage.ld_alpha is not None and not 0.0 <= stage.ld_alpha <= 1.0:
            raise ConfigError(f"stage.ld_alpha must be in [0, 1] or null, got {stage.ld_alpha}")
