"""Checks of a composed config that need no model or data; each raises ConfigError naming the key.

`validate(cfg)` checks values (allowed choices, ranges, fields that only work together); `check_keys(cfg,
schema)` checks names (every key the schema lacks, with the closest valid key). The schemas themselves and
the allowed values of their string fields (`CHOICES`) are in `medchat.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from medchat.config import CHOICES, ConfigError, GenerationSettings

# YAML booleans arrive as "True"/"False" in these str fields (they also take "auto").
LOWERCASED = ("trainer.gradient_checkpointing", "trainer.use_liger_kernel", "trainer.fused_lora", "trainer.compile",
              "trainer.micro_batch", "trainer.activation_offloading", "trainer.resume",
              "trainer.fixed_shape")


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def validate(cfg: Any) -> None:
    """Checks that need no model or data: raise ConfigError naming the key."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if key in LOWERCASED:
            value = str(value).lower()
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    positive = {
        "lora.r": cfg.lora.r,
        "lora.lora_alpha": cfg.lora.lora_alpha,
        "trainer.per_device_train_batch_size": cfg.trainer.per_device_train_batch_size,
        "trainer.per_device_eval_batch_size": cfg.trainer.per_device_eval_batch_size,
        "trainer.gradient_accumulation_steps": cfg.trainer.gradient_accumulation_steps,
        "trainer.max_length": cfg.trainer.max_length,
        "trainer.logging_steps": cfg.trainer.logging_steps,
        "trainer.save_steps": cfg.trainer.save_steps,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    if cfg.launcher.pack < 1:
        raise ConfigError(f"launcher.pack must be >= 1 (1: every sweep job in its own process), got {cfg.launcher.pack}")
    if cfg.quant.quant_storage is not None and cfg.quant.quant_storage not in ("bfloat16", "float16", "float32", "uint8"):
        raise ConfigError(f"quant.quant_storage={cfg.quant.quant_storage!r} is not one of bfloat16, float16, float32, uint8")
    if cfg.trainer.memory_budget_gib is not None and cfg.trainer.memory_budget_gib <= 0:
        raise ConfigError(f"trainer.memory_budget_gib must be > 0 or null, got {cfg.trainer.memory_budget_gib}")
    if not 0.0 <= cfg.lora.lora_dropout < 1.0:
        raise ConfigError(f"lora.lora_dropout must be in [0, 1), got {cfg.lora.lora_dropout}")
    if cfg.trainer.learning_rate <= 0:
        raise ConfigError(f"trainer.learning_rate must be > 0, got {cfg.trainer.learning_rate}")
    if cfg.trainer.max_steps <= 0 and cfg.trainer.num_train_epochs <= 0:
        raise ConfigError("set trainer.max_steps > 0 or trainer.num_train_epochs > 0")
    if cfg.dataset.eval_size is not None and cfg.dataset.eval_size < 0:
        raise ConfigError(f"dataset.eval_size must be >= 0, got {cfg.dataset.eval_size}")
    if cfg.dataset.n is not None and cfg.dataset.n <= 0:
        raise ConfigError(f"dataset.n must be > 0 or null, got {cfg.dataset.n}")
    if cfg.dataset.path is None and cfg.dataset.hub_id is None and not cfg.dataset.sources:
        raise ConfigError("dataset.path, dataset.hub_id or dataset.sources must be set")
    _validate_sources(cfg.dataset)
    if cfg.eval.every_steps is not None:
        if cfg.eval.every_steps <= 0 or cfg.eval.num_samples <= 0:
            raise ConfigError("eval.every_steps and eval.num_samples must be > 0")
        if cfg.dataset.eval_size == 0:
            raise ConfigError("eval.every_steps generates for held-out rows: set dataset.eval_size > 0")
        unknown = set(cfg.eval.metrics) - {"bleu", "rouge", "meteor", "bertscore"}
        if unknown:
            raise ConfigError(f"eval.metrics: unknown {', '.join(sorted(unknown))}; known: bleu, rouge, meteor, bertscore")
    _validate_best_and_early(cfg.trainer)
    if cfg.trainer.eval_strategy != "no" and cfg.dataset.eval_size == 0:
        raise ConfigError("trainer.eval_strategy needs eval rows: set dataset.eval_size > 0 or trainer.eval_strategy=no")
    GenerationSettings.check(cfg.eval, "eval.")  # the same rules as evaluate.py's and chat's generation keys


def _validate_best_and_early(t) -> None:
    """load_best_model_at_end / early stopping need evaluations that coincide with saved checkpoints."""
    if t.early_stopping_patience is not None and t.early_stopping_patience <= 0:
        raise ConfigError(f"trainer.early_stopping_patience must be > 0 or null, got {t.early_stopping_patience}")
    if not (t.load_best_model_at_end or t.early_stopping_patience):
        return
    key = "trainer.early_stopping_patience" if t.early_stopping_patience else "trainer.load_best_model_at_end"
    if t.eval_strategy != "steps":
        raise ConfigError(f"{key} needs trainer.eval_strategy=steps (it compares evaluations), got {t.eval_strategy}")
    # unset, the plan picks a divisor of save_steps (medchat.eval_schedule.evaluation_plan)
    if t.eval_steps and t.save_steps % t.eval_steps:
        raise ConfigError(f"{key} needs trainer.save_steps ({t.save_steps}) to be a multiple of trainer.eval_steps "
                          f"({t.eval_steps}): only evaluated checkpoints can be the best one")
    if not t.metric_for_best_model.startswith("eval_"):
        raise ConfigError(f"trainer.metric_for_best_model={t.metric_for_best_model!r} must be an eval_* metric")


def _validate_sources(d) -> None:
    """dataset.sources: each names its rows; shares are either all weights or row counts, never mixed."""
    if not d.sources:
        return
    if d.path is not None or d.hub_id is not None:
        raise ConfigError("dataset.sources replaces dataset.path / dataset.hub_id: set one or the other "
                          "(dataset.path=null dataset.hub_id=null)")
    weighted = [s.weight is not None for s in d.sources]
    for i, s in enumerate(d.sources):
        key = f"dataset.sources[{i}]"
        if s.path is None and s.hub_id is None:
            raise ConfigError(f"{key}: set path or hub_id")
        if s.schema not in CHOICES["dataset.schema"]:
            raise ConfigError(f"{key}.schema={s.schema!r} is not one of {', '.join(CHOICES['dataset.schema'])}")
        if s.format not in CHOICES["dataset.format"]:
            raise ConfigError(f"{key}.format={s.format!r} is not one of {', '.join(CHOICES['dataset.format'])}")
        if s.weight is not None and s.n is not None:
            raise ConfigError(f"{key}: set n (rows) or weight (share), not both")
        if s.weight is not None and s.weight <= 0:
            raise ConfigError(f"{key}.weight must be > 0, got {s.weight}")
        if s.n is not None and s.n <= 0:
            raise ConfigError(f"{key}.n must be > 0, got {s.n}")
    if any(weighted) and not all(weighted):
        raise ConfigError("dataset.sources: give every source a weight, or none (use n for row counts)")


# Dict fields whose keys are the user's own (column names, free-form notes): not checked against a schema.
OPEN_FIELDS = ("dataset.columns", "extra")
OPEN_SUFFIXES = (".columns",)  # dataset.sources[i].columns too


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass a field holds (also through Optional[...] and List[...]), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) is list:
        args = typing.get_args(tp)
        return args[0] if args and dataclasses.is_dataclass(args[0]) else None
    if typing.get_origin(tp) is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def unknown_keys(cfg: Any, schema: type, prefix: str = "", open_fields: tuple = OPEN_FIELDS) -> list[str]:
    """Every key of `cfg` (a DictConfig or dict) that `schema` (a dataclass) does not declare, as
    "dotted.key (did you mean dotted.other?)" lines. Hydra's `+key=`/`++key=` force-add keys past struct
    mode and a YAML file merged onto a Dict field is never checked, so composing alone proves nothing."""
    from omegaconf import DictConfig, ListConfig

    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    found = []
    keys = list(cfg.keys()) if isinstance(cfg, (DictConfig, dict)) else []
    for key in keys:
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known here: {', '.join(names)})"
            found.append(f"{dotted}{hint}")
            continue
        if dotted in open_fields or dotted.endswith(OPEN_SUFFIXES):
            continue
        sub = _dataclass_of(hints[key])
        value = cfg._get_node(key) if isinstance(cfg, DictConfig) else cfg[key]
        if sub is not None and isinstance(value, (DictConfig, dict)):
            found += unknown_keys(value, sub, dotted + ".", open_fields)
        elif sub is not None and isinstance(value, (ListConfig, list)):  # dataset.sources[i]
            for i, item in enumerate(value):
                if isinstance(item, (DictConfig, dict)):
                    found += unknown_keys(item, sub, f"{dotted}[{i}].", open_fields)
    return found


def check_keys(cfg: Any, schema: type, what: str = "config") -> None:
    """Raise ConfigError naming every key `schema` lacks, each with the closest valid key."""
    bad = unknown_keys(cfg, schema)
    if bad:
        raise ConfigError(f"unknown {what} key{'s' if len(bad) > 1 else ''}: " + "; ".join(bad))
