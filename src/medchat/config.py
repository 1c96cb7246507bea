"""Typed schemas behind the Hydra config groups.

Every YAML file under `conf/` is merged onto these dataclasses (registered in Hydra's ConfigStore as
`medchat_schema`), so an unknown key or a wrongly typed value fails at compose time with the key's name,
instead of being silently ignored. Field names follow the library each group feeds (PEFT's `LoraConfig`,
TRL's `SFTConfig`, W&B's `init`) so that a reader who knows those APIs knows these keys.

Checks of a composed config (cross-field values, keys the schema lacks) live in `medchat.config_checks`;
checks that need the model's architecture (LoRA target modules) live in `medchat.modeling`.
"""

from __future__ import annotations

import dataclasses
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
    # How columns map to a conversation: messages | sharegpt | instruction | qa | patient_doctor, or for
    # stage=dpo|orpo preference (prompt/chosen/rejected; see medchat.data.preference)
    schema: str = "messages"
    # Column names per role, overriding the schema's defaults: question, answer, system, messages, id
    # (preference: prompt, chosen, rejected, messages, system, id, split).
    columns: Dict[str, str] = field(default_factory=dict)
    num_proc: Optional[int] = None  # processes for loading and tokenizing a large dataset
    cache_tokenized: bool = True  # reuse tokenized rows across runs and sweep jobs (medchat.data.cache)
    n: Optional[int] = None  # subsample this many rows (after cleaning), with `seed`
    seed: int = 42
    # < 1: fraction of rows; >= 1: number of rows; null: 10% of the rows, at most 1,000 (data.prepare.eval_count)
    eval_size: Optional[float] = None
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
    # null: about 10 evaluations per run, never more often than every 50 optimizer steps (medchat.eval_schedule.evaluation_plan)
    eval_steps: Optional[int] = None
    save_steps: int = 100
    save_total_limit: Optional[int] = 3
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    # auto: none if the estimated peak fits trainer.memory_budget_gib, else every n-th layer, else all (GPU);
    # none on CPU. true | false | partial (every trainer.checkpoint_every_n_layers-th layer). Never reentrant.
    gradient_checkpointing: str = "auto"
    checkpoint_every_n_layers: Optional[int] = None
    memory_budget_gib: Optional[float] = None  # null: 85% of the GPU's memory
    use_liger_kernel: str = "auto"  # auto: off (failed the GPU equivalence check, plan.choose_liger) | true | false
    # --- speed levers (issue 13; medchat.speed) ---
    fused_lora: str = "auto"  # auto: one fused autograd function per LoRA projection on a GPU | true | false
    # regional torch.compile of the decoder layers: auto (on where the GPU record measured it faster and equivalent
    # and its memory fits: medchat.speed.apply.compile_choice) | true | false
    compile: str = "auto"
    # every micro-batch padded to one shape (rows x max_length tokens; padding neither trained nor attended), the
    # static shapes compile and CUDA graphs need: auto (exactly where the layers are compiled) | true | false
    fixed_shape: str = "auto"
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
    """How answers are generated: chat and the app (built from their flat keys), evaluate.py's `generation`,
    training's `eval` and make_pairs all use this one class, turned into transformers' GenerationConfig by
    medchat.decoding (the model's own generation config never adds to it)."""

    max_new_tokens: int = 256
    do_sample: bool = False  # false: greedy
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0  # when sampling: keep the k likeliest tokens; 0 = no top-k cut (top_p alone)
    repetition_penalty: float = 1.0

    @staticmethod
    def of(cfg) -> "GenerationSettings":
        """These keys alone, from a config that holds them among others (evaluate.py's generation, eval.*)."""
        return GenerationSettings(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(GenerationSettings)})

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
        if self.top_k < 0:
            raise ConfigError(f"{prefix}top_k must be >= 0 (0 = no top-k cut), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"{prefix}repetition_penalty must be > 0, got {self.repetition_penalty}")


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
    # up to this many jobs that differ only in adapter-side keys (lora.r, learning rate, seed, ...) train in one
    # process on one shared base (medchat.sweeps.grouping, medchat.sweeps.pack_train); 1: every job alone
    pack: int = 1


@dataclass
class StageConfig:
    """Which objective trains the adapter: sft (TRL SFTTrainer), dpo (DPOTrainer), orpo (ORPOTrainer, which
    TRL 1.16 ships in trl.experimental.orpo). Keys other than `name` and `init_from` are DPOConfig / ORPOConfig
    names and pass through unchanged (ORPO reads only `beta`, its lambda)."""

    name: str = "sft"  # sft | dpo | orpo
    # dpo: a finished SFT run dir; its adapter is trained further and a frozen copy of it is the reference model.
    # null: a fresh LoRA adapter on the base, the base being the reference. sft/orpo: must be null.
    init_from: Optional[str] = None
    beta: float = 0.1
    loss_type: List[str] = field(default_factory=lambda: ["sigmoid"])
    loss_weights: Optional[List[float]] = None
    label_smoothing: float = 0.0
    use_weighting: bool = False
    ld_alpha: Optional[float] = None
    precompute_ref_log_probs: bool = False


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
    stage: StageConfig = field(default_factory=StageConfig)
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
    "dataset.schema": ("messages", "sharegpt", "instruction", "qa", "patient_doctor", "preference"),
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
    "trainer.fixed_shape": ("auto", "true", "false"),
    "trainer.micro_batch": ("auto", "fixed"),
    "trainer.activation_offloading": ("auto", "true", "false"),
    "tracker.backend": ("wandb", "tensorboard", "none"),
    "tracker.mode": ("auto", "online", "offline"),
    "stage.name": ("sft", "dpo", "orpo"),
}


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def flatten(d: dict, prefix: str = "") -> dict:
    """A plain (nested) config dict -> {"dotted.key": value}: how W&B records a run's config and how medchat.resume
    compares two attempts' configs. An empty section stays one key whose value is {} (emptying a section is a
    change a resume must see)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
