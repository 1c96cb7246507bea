"""stage=dpo: Direct Preference Optimization on preference pairs (TRL's DPOTrainer), from the base model with a
fresh LoRA adapter or continuing a finished SFT run's adapter (stage.init_from; medchat.stages.preference)."""

from __future__ import annotations

from pathlib import Path

from medchat.config import ConfigError
from medchat.stages.preference import PreferenceStage

# DPOConfig.loss_type values in TRL 1.16 (its docstring); tests/test_stages.py checks them against TRL's own list.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


class DPO(PreferenceStage):
    name = "dpo"
    continues_a_run = True

    def check(self, dataset_cfg) -> None:
        super().check(dataset_cfg)
        s = self.cfg
        unknown = [t for t in s.loss_type if t not in DPO_LOSS_TYPES]
        if not s.loss_type or unknown:
            raise ConfigError(f"stage.loss_type: unknown {', '.join(unknown) or '(empty)'}; "
                              f"TRL's DPO losses are {', '.join(DPO_LOSS_TYPES)}")
        if s.loss_weights is not None and len(s.loss_weights) != len(s.loss_type):
            raise ConfigError(f"stage.loss_weights has {len(s.loss_weights)} weights for "
                              f"{len(s.loss_type)} stage.loss_type entries")
        if s.ld_alpha is not None and not 0.0 <= s.ld_alpha <= 1.0:
            raise ConfigError(f"stage.ld_alpha must be in [0, 1] or null, got {s.ld_alpha}")

    def trainer_config(self, trainer_cfg, tracker_cfg, run_dir: Path, plan):
        """trainer.* + stage.* + the plan -> trl.DPOConfig (TRL names)."""
        from trl import DPOConfig

        s = self.cfg
        return DPOConfig(
            **self.common_arguments(trainer_cfg, tracker_cfg, run_dir, plan, DPOConfig),
            beta=float(s.beta),
            loss_type=[str(t) for t in s.loss_type],
            loss_weights=[float(w) for w in s.loss_weights] if s.loss_weights is not None else None,
            label_smoothing=float(s.label_smoothing),
            use_weighting=bool(s.use_weighting),
            ld_alpha=float(s.ld_alpha) if s.ld_alpha is not None else None,
            precompute_ref_log_probs=bool(s.precompute_ref_log_probs),
        )

    def trainer_class(self):
        from medchat.stages.trainers import MedchatDPOTrainer

        return MedchatDPOTrainer
