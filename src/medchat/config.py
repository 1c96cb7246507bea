"""Typed schemas behind the Hydra config groups.

Every YAML file under `conf/` is merged onto these dataclasses (registered in Hydra's ConfigStore as
`medchat_schema`), so an unknown key or a wrongly typed value fails at compose time with the key's name,
instead of being silently ignored. Field names follow the library each group feeds (PEFT's `LoraConfig`,
TRL's `SFTConfig`, W&B's `init`) so that a reader who knows those APIs knows these keys.

Cross-field checks that need no model live in `validate()`; checks that need the model's architecture
(LoRA target modules) live in `medchat.modeling`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TinyModelConfig:
    """Shape of the offline model built by code (`model.name_or_path=tiny`)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 384  # multiples of 64: bitsandbytes CPU 4-bit packs blocks of 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = "tiny"
    name_or_path: str = "tiny"  # Hub id, local directory, or "tiny" (built offline by medchat.tiny)
    revision: Optional[str] = None
    tokenizer: Optional[str] = None  # defaults to name_or_path
    # null: the tokenizer's own template. Otherwise a template shipped in medchat/templates
    # ("chatml", "inst") or a path to a .jinja file.
    chat_template: Optional[str] = None
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    attn_implementation: str = "auto"  # auto | sdpa | eager | flex_attention | flash_attention_2
    trust_remote_code: bool = False
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class DatasetSourceConfig:
    """One dataset of a mixture (dataset.sources): where its rows are, how its columns map, how many to take."""

    name: Optional[str] = None  # names the source in split.json's counts; default: its path or hub id
    path: Optional[str] = None
    hub_id: Optional[str] = None
    subset: Optional[str] = None  # datasets.load_dataset's `name` (a configuration of the Hub dataset)
    revision: Optional[str] = None
    hub_split: str = "train"
    data_files: Optional[Any] = None  # datasets.load_dataset's data_files: a path, a list, or {split: paths}
    format: str = "auto"
    schema: str = "messages"
    columns: Dict[str, str] = field(default_factory=dict)
    system_prompt: Optional[str] = None  # null: dataset.system_prompt
    n: Optional[int] = None  # take this many of its rows (seeded), or
    weight: Optional[float] = None  # its share of the mixture (relative to the other sources' weights)


@dataclass
class DatasetConfig:
    name: str = "sample"
    # Where rows come from: a local json/jsonl/csv/parquet file (or directory of them), else `hub_id`
    # (with datasets.load_dataset's name -> `subset`, `revision`, split -> `hub_split`, `data_files`),
    # else several `sources` mixed into one run.
    path: Optional[str] = None
    hub_id: Optional[str] = None
    subset: Optional[str] = None
    revision: Optional[str] = None
    hub_split: str = "train"
    data_files: Optional[Any] = None
    sources: List[DatasetSourceConfig] = field(default_factory=list)
    format: str = "auto"  # auto (from the file suffix) | json | jsonl | csv | parquet
    # How columns map to a conversation: messages | sharegpt | instruction | qa | patient_doctor
    schema: str = "messages"
    # Column names per role, overriding the schema's defaults: question, answer, system, messages, id.
    columns: Dict[str, str] = field(default_factory=dict)
    num_proc: Optional[int] = None  # processes for loading and tokenizing a large dataset
    cache_tokenized: bool = True  # reuse tokenized rows across runs and sweep jobs (medchat.data.cache)
    n: Optional[int] = None  # subsample this many rows (after cleaning), with `seed`
    seed: int = 42
    eval_size: float = 0.1  # < 1: fraction of rows; >= 1: number of rows
    # A column whose value groups rows (e.g. document_id): a group's rows all land on one side of the split.
    split_by: Optional[str] = None
    system_prompt: Optional[str] = None  # overrides any system text from the data
    prompt_format: str = "chat_template"  # chat_template | plain ("### Patient query: ... ### Doctor opinion: ...")
    dedup: bool = True  # drop exact duplicate conversations
    drop_eval_overlap: bool = True  # drop eval rows whose question also appears in train


@dataclass
class LoraConfig:
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Preset resolved against the model's modules: qv | attention | all_linear | all_linear_lm_head.
    targets: str = "all_linear"
    target_modules: Optional[List[str]] = None  # explicit module names; overrides `targets`
    bias: str = "none"
    use_rslora: bool = False


@dataclass
class QuantConfig:
    mode: str = "nf4"  # nf4 | fp4 | int8 | none
    double_quant: bool = True
    compute_dtype: str = "auto"  # auto: bf16 where the GPU supports it, else fp32
    # dtype 4-bit weights are stored as. null: uint8, or the model's dtype under FSDP (which needs that to shard)
    quant_storage: Optional[str] = None


@dataclass
class TrainerConfig:
    """Keys are TRL `SFTConfig` / transformers `TrainingArguments` names, except `precision`, `resume`,
    `truncation`, `fail_at_step`, the checkpointing plan's `checkpoint_every_n_layers` and `memory_budget_gib`,
    the medchat.speed switches and `early_stopping_*` (transformers' EarlyStoppingCallback's names)."""

    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    per_device_eval_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.03  # < 1: a fraction of the total steps (transformers 5 dropped warmup_ratio)
    weight_decay: float = 0.0
    max_grad_norm: float = 0.3
    optim: str = "auto"  # auto: fused AdamW on GPU, AdamW on CPU; or any transformers name (paged_adamw_32bit, ...)
    logging_steps: int = 10
    eval_strategy: str = "steps"  # steps | epoch | no
    eval_steps: Optional[int] = None  # null: same as logging_steps
    save_steps: int = 100
    save_total_limit: Optional[int] = 3
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    # auto: none if the estimated peak fits trainer.memory_budget_gib, else every n-th layer, else all (GPU);
    # none on CPU. true | false | partial (every trainer.checkpoint_every_n_layers-th layer). Never reentrant.
    gradient_checkpointing: str = "auto"
    checkpoint_every_n_layers: Optional[int] = None
    memory_budget_gib: Optional[float] = None  # null: 85% of the GPU's memory
    use_liger_kernel: str = "auto"  # auto: on a CUDA GPU when liger-kernel is installed | true | false
    # --- speed levers (issue 13; medchat.speed) ---
    fused_lora: str = "auto"  # auto: one fused autograd function per LoRA projection on a GPU | true | false
    compile: str = "auto"  # regional torch.compile of the decoder layers: auto (off until measured) | true | false
    micro_batch: str = "auto"  # auto: largest micro-batch that fits memory_budget_gib at the same step batch | fixed
    activation_offloading: str = "auto"  # auto: offload checkpointed inputs only when nothing else fits | true | false
    train_sampling_strategy: str = "random"  # random | group_by_length (the notebooks' group_by_length=True)
    packing: bool = True  # padding-free BFD packing; each example attends only to itself
    max_length: int = 1024
    seed: int = 42
    dataloader_num_workers: int = 0
    # auto: continue from the run dir's latest checkpoint if it has one, else start (a plain retry of a failed or
    # interrupted run just works); true: continue, refusing a run dir with no checkpoint; false: never continue
    # (a run dir that holds a run is refused). A done run is never retrained. See medchat.resume.
    resume: str = "auto"
    # Rows longer than max_length: drop them (counted), or keep them cut to max_length (counted; a cut answer
    # loses its EOS). Rows with no doctor token left are always dropped. See medchat.formatting.truncate.
    truncation: str = "keep"
    # Keep the checkpoint with the lowest eval loss and load it at the end (transformers' names; needs
    # evaluation, and save_steps a multiple of eval_steps). metrics.json records which checkpoint won.
    load_best_model_at_end: bool = False
    metric_for_best_model: str = "eval_loss"
    # Stop when the eval loss has not improved (by more than the threshold) for this many evaluations
    # (transformers' EarlyStoppingCallback; it implies load_best_model_at_end). null: never stop early.
    early_stopping_patience: Optional[int] = None
    early_stopping_threshold: float = 0.0
    fail_at_step: Optional[int] = None  # testing aid: raise after this optimizer step, as a crash would


@dataclass
class TrackerConfig:
    backend: str = "wandb"  # wandb | tensorboard | none
    project: str = "medchat"
    entity: Optional[str] = None
    group: Optional[str] = None
    # default: a sweep job is named by what differs in the sweep (r8-lr1e-4), a single run
    # <experiment or model>-<dataset>-<run dir name>; group default: the sweep
    name: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    mode: str = "auto"  # auto: online when an API key is set, else offline | online | offline
    log_model: bool = False  # upload RUN/adapter as a W&B model artifact at the end of training


@dataclass
class GenerationSettings:
    """How answers are generated: chat and the app (built from their flat keys), evaluate.py's `generation`
    and training's `eval` all use this one class."""

    max_new_tokens: int = 256
    do_sample: bool = False  # false: greedy
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.0

    def check(self, prefix: str = "") -> None:
        """ConfigError naming the key (`prefix` + field) of a value generate() cannot take."""
        if self.max_new_tokens <= 0:
            raise ConfigError(f"{prefix}max_new_tokens must be > 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"{prefix}temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.do_sample and self.temperature == 0:
            raise ConfigError(f"sampling ({prefix}do_sample=true) needs {prefix}temperature > 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{prefix}top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"{prefix}repetition_penalty must be > 0, got {self.repetition_penalty}")

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": int(self.max_new_tokens), "do_sample": bool(self.do_sample),
                  "repetition_penalty": float(self.repetition_penalty)}
        if self.do_sample:
            kwargs.update(temperature=float(self.temperature), top_p=float(self.top_p))
        return kwargs


@dataclass
class EvalConfig(GenerationSettings):
    """Generation metrics logged during training (the evaluation issue builds on this)."""

    max_new_tokens: int = 128
    every_steps: Optional[int] = None  # null: no generation during training
    num_samples: int = 8
    metrics: List[str] = field(default_factory=lambda: ["bleu", "rouge", "meteor", "bertscore"])


@dataclass
class LauncherConfig:
    """How `-m` sweeps run their jobs (read by the medchat Hydra launcher)."""

    parallel: int = 1  # jobs at a time on CPU
    gpus_per_job: int = 1


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    lora: LoraConfig = MISSING
    quant: QuantConfig = MISSING
    trainer: TrainerConfig = MISSING
    tracker: TrackerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    experiment_name: Optional[str] = None
    runs_root: str = "runs"  # where run dirs go unless hydra.run.dir is set
    extra: Dict[str, Any] = field(default_factory=dict)  # free-form notes saved with the run


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="medchat_schema", node=Config)


# Allowed values of the string-typed choices, checked before anything heavy is loaded.
CHOICES = {
    "model.dtype": ("auto", "bfloat16", "float16", "float32"),
    "model.attn_implementation": ("auto", "sdpa", "eager", "flex_attention", "flash_attention_2"),
    "dataset.format": ("auto", "json", "jsonl", "csv", "parquet"),
    "dataset.schema": ("messages", "sharegpt", "instruction", "qa", "patient_doctor"),
    "dataset.prompt_format": ("chat_template", "plain"),
    "lora.targets": ("qv", "attention", "all_linear", "all_linear_lm_head"),
    "lora.bias": ("none", "all", "lora_only"),
    "quant.mode": ("nf4", "fp4", "int8", "none"),
    "quant.compute_dtype": ("auto", "bfloat16", "float16", "float32"),
    "trainer.precision": ("auto", "bf16", "fp16", "fp32"),
    "trainer.eval_strategy": ("steps", "epoch", "no"),
    "trainer.train_sampling_strategy": ("random", "group_by_length", "sequential"),
    "trainer.gradient_checkpointing": ("auto", "true", "false", "partial"),
    "trainer.use_liger_kernel": ("auto", "true", "false"),
    "trainer.resume": ("auto", "true", "false"),
    "trainer.truncation": ("drop", "keep"),
    "trainer.fused_lora": ("auto", "true", "false"),
    "trainer.compile": ("auto", "true", "false"),
    "trainer.micro_batch": ("auto", "fixed"),
    "trainer.activation_offloading": ("auto", "true", "false"),
    "tracker.backend": ("wandb", "tensorboard", "none"),
    "tracker.mode": ("auto", "online", "offline"),
}


LOWERCASED = ("trainer.gradient_checkpointing", "trainer.use_liger_kernel", "trainer.fused_lora", "trainer.compile",
              "trainer.micro_batch", "trainer.activation_offloading", "trainer.resume")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def validate(cfg: Any) -> None:
    """Checks that need no model or data: raise ConfigError naming the key."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if key in LOWERCASED:  # YAML booleans arrive as "True"/"False" in these str fields
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
    if cfg.dataset.eval_size < 0:
        raise ConfigError(f"dataset.eval_size must be >= 0, got {cfg.dataset.eval_size}")
    if cfg.dataset.n is not None and cfg.dataset.n <= 0:
        raise ConfigError(f"dataset.n must be > 0 or null, got {cfg.dataset.n}")
    if cfg.dataset.path is None and cfg.dataset.hub_id is None and not cfg.dataset.sources:
        raise ConfigError("dataset.path, dataset.hub_id or dataset.sources must be set")
    _validate_sources(cfg.dataset)
    if cfg.eval.every_steps is not None:
        if cfg.eval.every_steps <= 0 or cfg.eval.num_samples <= 0 or cfg.eval.max_new_tokens <= 0:
            raise ConfigError("eval.every_steps, eval.num_samples and eval.max_new_tokens must be > 0")
        if cfg.dataset.eval_size == 0:
            raise ConfigError("eval.every_steps generates for held-out rows: set dataset.eval_size > 0")
        unknown = set(cfg.eval.metrics) - {"bleu", "rouge", "meteor", "bertscore"}
        if unknown:
            raise ConfigError(f"eval.metrics: unknown {', '.join(sorted(unknown))}; known: bleu, rouge, meteor, bertscore")
    _validate_best_and_early(cfg.trainer)
    if cfg.trainer.eval_strategy != "no" and cfg.dataset.eval_size == 0:
        raise ConfigError("trainer.eval_strategy needs eval rows: set dataset.eval_size > 0 or trainer.eval_strategy=no")


def _validate_best_and_early(t) -> None:
    """load_best_model_at_end / early stopping need evaluations that coincide with saved checkpoints."""
    if t.early_stopping_patience is not None and t.early_stopping_patience <= 0:
        raise ConfigError(f"trainer.early_stopping_patience must be > 0 or null, got {t.early_stopping_patience}")
    if not (t.load_best_model_at_end or t.early_stopping_patience):
        return
    key = "trainer.early_stopping_patience" if t.early_stopping_patience else "trainer.load_best_model_at_end"
    if t.eval_strategy != "steps":
        raise ConfigError(f"{key} needs trainer.eval_strategy=steps (it compares evaluations), got {t.eval_strategy}")
    eval_steps = t.eval_steps or t.logging_steps
    if t.save_steps % eval_steps:
        raise ConfigError(f"{key} needs trainer.save_steps ({t.save_steps}) to be a multiple of trainer.eval_steps "
                          f"({eval_steps}): only evaluated checkpoints can be the best one")
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
