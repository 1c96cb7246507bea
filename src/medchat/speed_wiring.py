"""The one function training.sft_config calls for issue 13's micro-batch plan (kept out of training.py so
that the refactor of issue 11 can re-home it onto the run plan in one place)."""

from __future__ import annotations

import math

from medchat import perf


def micro_batch(cfg, choices: dict, plan: perf.CheckpointPlan):
    """-> (checkpoint plan, SFTConfig batch kwargs). Without an auto plan the config's numbers stand."""
    from medchat.speed.apply import offload_choice, plan as auto_plan

    t = cfg.trainer
    offload = offload_choice(cfg) == "true"
    kwargs = {"per_device_train_batch_size": t.per_device_train_batch_size,
              "gradient_accumulation_steps": t.gradient_accumulation_steps, "activation_offloading": offload}
    mb = auto_plan(cfg, choices["use_liger_kernel"])
    if mb is None:
        return plan, kwargs
    choices["micro_batch"] = mb
    layers = None
    if mb.checkpointed_layers:
        from transformers import AutoConfig

        from medchat.modeling import model_path

        layers = AutoConfig.from_pretrained(model_path(cfg.model), revision=cfg.model.revision,
                                            trust_remote_code=cfg.model.trust_remote_code).num_hidden_layers
    if mb.checkpointed_layers == 0:
        plan = perf.CheckpointPlan(False, estimate_bytes=mb.estimate_bytes, reason="auto micro-batch: " + mb.reason)
    else:
        every = next(n for n in range(layers, 0, -1) if math.ceil(layers / n) == mb.checkpointed_layers)
        plan = perf.CheckpointPlan(True, every, mb.checkpointed_layers, mb.estimate_bytes,
                                   "auto micro-batch: " + mb.reason)
    kwargs.update(per_device_train_batch_size=mb.per_device_train_batch_size,
                  gradient_accumulation_steps=mb.gradient_accumulation_steps,
                  activation_offloading=offload or mb.offload)
    return plan, kwargs
