"""evaluate.py's config -> what to load and where to write, with every check that needs no weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from medchat import modeling
from medchat.config import ConfigError, QuantConfig
from medchat.evaluation import loading
from medchat.evaluation.config import validate


@dataclass
class Plan:
    model_cfg: object
    quant_cfg: object
    model_path: str  # where the base model's weights are read
    adapter: Path | None  # None: evaluate the base model alone
    tokenizer_source: str | None  # the run's saved tokenizer (with its chat template), else the model's
    prompt_format: str
    max_length: int | None  # the run's trainer.max_length: perplexity scores what training scored
    out_dir: Path
    run_dir: Path | None
    rows_file: Path | None  # rows.path=FILE (else the run's held-out rows)
    merged: Path | None = None  # artifact=RUN/export/merged: this folder is the fine-tuned model, as shipped
    artifact: dict | None = None  # what "adapter" is in the outputs: {"kind", "path"}


def artifact_kind(path: Path) -> str:
    """An exported folder -> "adapter" (PEFT files) or "merged" (a full model), else a ConfigError."""
    if not path.is_dir():
        raise ConfigError(f"artifact={path}: no such directory")
    if (path / "adapter_config.json").is_file():
        return "adapter"
    if (path / "config.json").is_file():
        return "merged"
    raise ConfigError(f"artifact={path}: neither an adapter (adapter_config.json) nor a model (config.json); "
                      "export one with python -m medchat.export run_dir=RUN [merge=true]")


def eval_name(cfg) -> str:
    """What one evaluation scored, as a folder name: <rows>-<models>[-<quant>][-unmerged][-limitN].

    heldout-base+adapter, icliniq_1500-n50-adapter, heldout-adapter-limit2, mcq-base+adapter, ... Each
    evaluation keeps its own folder, so a smoke run never replaces a full one."""
    if cfg.task == "mcq":
        rows = "mcq"
    elif cfg.rows.path:
        rows = Path(str(cfg.rows.path).removeprefix("medchat:")).stem + (f"-n{cfg.rows.n}-seed{cfg.rows.seed}"
                                                                         if cfg.rows.n else "")
    else:
        rows = "heldout"
    if cfg.model is not None:
        models = cfg.model.name
    elif cfg.artifact:
        models = ("base+" if cfg.compare_base else "") + "export_" + Path(str(cfg.artifact)).name
    else:
        models = "base+adapter" if cfg.compare_base else "adapter"
        if not cfg.merge:
            models += "-unmerged"
    if cfg.quant is not None:
        models += f"-{cfg.quant.mode}"
    limit = cfg.limit if cfg.task != "mcq" else (cfg.limit or cfg.mcq.limit)
    return f"{rows}-{models}" + (f"-limit{limit}" if limit else "")


def make_plan(cfg) -> Plan:
    validate(cfg)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else None
    if run_dir is not None and not run_dir.is_dir():
        raise ConfigError(f"run_dir={run_dir}: no such directory")
    run_cfg = loading.read_run_config(run_dir) if run_dir else None
    none = OmegaConf.structured(QuantConfig(mode="none"))
    if cfg.model is not None:  # a preset base model, no adapter
        model_cfg, quant_cfg, adapter, tokenizer_source = cfg.model, cfg.quant or none, None, None
        model_path = modeling.model_path(model_cfg)
    else:
        model_cfg, quant_cfg = run_cfg.model, cfg.quant or run_cfg.quant
        adapter = loading.adapter_dir(run_dir)
        model_path = cfg.base_model or modeling.model_path(model_cfg)
        loading.check_adapter_base(adapter, model_cfg, model_path, check_name=cfg.base_model is None)
        tokenizer_source = str(adapter)
    merged, artifact = None, None
    if cfg.model is None:
        artifact = {"kind": f"run adapter, {'merged into the base (quantized weights dequantized first)' if cfg.merge else 'unmerged'}",
                    "path": str(adapter)}
    if cfg.artifact:
        path = Path(cfg.artifact)
        if artifact_kind(path) == "adapter":
            loading.check_adapter_base(path, model_cfg, model_path, check_name=cfg.base_model is None)
            adapter = path
            artifact = {"kind": "exported adapter", "path": str(path)}
        else:  # the merged model itself; the run's adapter is not used
            merged, adapter = path, None
            artifact = {"kind": "exported merged model, loaded as saved", "path": str(path)}
        tokenizer_source = str(path)
    modeling.check_quantization(quant_cfg)
    if cfg.out_dir:
        out_dir = Path(cfg.out_dir)
    else:
        out_dir = (run_dir if run_dir is not None else Path("runs")) / "eval" / eval_name(cfg)
    return Plan(
        model_cfg=model_cfg,
        quant_cfg=quant_cfg,
        model_path=model_path,
        adapter=adapter,
        tokenizer_source=tokenizer_source,
        prompt_format=run_cfg.dataset.prompt_format if run_cfg else "chat_template",
        max_length=run_cfg.trainer.max_length if run_cfg else None,
        out_dir=out_dir,
        run_dir=run_dir,
        rows_file=Path(cfg.rows.path) if cfg.rows.path else None,
        merged=merged,
        artifact=artifact,
    )


def load_tokenizer(plan: Plan):
    return modeling.load_tokenizer(plan.model_cfg, path=plan.tokenizer_source)
