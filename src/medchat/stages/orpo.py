"""stage=orpo: Odds Ratio Preference Optimization on preference pairs (TRL's ORPOTrainer), from the base model
with a fresh LoRA adapter: no reference model, the SFT loss and the odds-ratio term in one (medchat.stages.preference
for what it shares with DPO)."""

from __future__ import annotations

from pathlib import Path

from medchat.config import ConfigError
from medchat.stages.preference import PreferenceStage


class ORPO(PreferenceStage):
    name = "orpo"

    def trainer_config(self, trainer_cfg, tracker_cfg, run_dir: Path, plan):
        """trainer.* + stage.beta + the plan -> trl.experimental.orpo.ORPOConfig (TRL names)."""
        from trl.experimental.orpo import ORPOConfig

        common = self.common_arguments(trainer_cfg, tracker_cfg, run_dir, plan, ORPOConfig)
        # ORPO's batches have no `input_ids` (chosen_/rejected_input_ids), so the Trainer cannot count tokens
        common["include_num_input_tokens_seen"] = "no"
        if common.pop("activation_offloading"):
            raise ConfigError("trainer.activation_offloading: ORPOConfig (TRL 1.16) has no activation offloading; "
                              "set trainer.activation_offloading=false or use stage=dpo")
        return ORPOConfig(**common, beta=float(self.cfg.beta))

    def trainer_class(self):
        from medchat.stages.trainers import MedchatORPOTrainer

        return MedchatORPOTrainer
