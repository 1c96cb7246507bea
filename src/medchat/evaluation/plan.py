"""evaluate.py's config -> what to load and where to write, with every check that needs no weights.

The run is opened through medchat.runs (its config, its adapter checked against the base on the meta
device); the models are built there too, for generation on this machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from medchat import hardware, modeling, runs
from medchat.config import ConfigError, QuantConfig
from medchat.evaluation.config import validate
from medchat.plan import ModelPlan, model_plan

log = logging.getLogger(__name__)


@dataclass
class Plan:
    model_cfg: object
    quant_cfg: object
    model: ModelPlan  # how the base is loaded for generation on this machine
    adapter: Path | None  # None: evaluate the base model alone
    tokenizer_source: str | None  # the run's saved tokenizer (with its chat template), else the model's
    prompt_format: str
    max_length: int | None  # the run's trainer.max_length: perplexity scores what training scored
    out_dir: Path
    run_dir: Path | None
    rows_file: Path | None  # model=<preset> rows=FILE

    @property
    def model_path(self) -> str:
        return self.model.path


def make_plan(cfg) -> Plan:
    validate(cfg)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else None
    if run_dir is not None and not run_dir.is_dir():
        raise ConfigError(f"run_dir={run_dir}: no such directory")
    none = OmegaConf.structured(QuantConfig(mode="none"))
    if cfg.model is not None:  # a preset base model, no adapter (on the run's rows when run_dir is set)
        run_cfg = runs.read_config(run_dir) if run_dir else None
        model_cfg, quant_cfg, adapter, tokenizer_source = cfg.model, cfg.quant or none, None, None
        path = modeling.model_path(model_cfg)
    else:
        run = runs.open_run(run_dir)
        run_cfg = run.cfg
        model_cfg, quant_cfg, adapter = run_cfg.model, cfg.quant or run_cfg.quant, run.adapter
        path = runs.base_path(run, cfg.base_model)
        # base_model= relocates the base: its name may differ, the shapes still have to fit
        runs.check_adapter_base(adapter, model_cfg, path, check_name=cfg.base_model is None,
                                where="base_model=" if cfg.base_model else f"model.name_or_path in {run.config_file}")
        tokenizer_source = str(adapter)
    if cfg.out_dir:
        out_dir = Path(cfg.out_dir)
    elif run_dir is not None:
        out_dir = run_dir / ("eval" if cfg.model is None else f"eval-{cfg.model.name}")
    else:
        out_dir = Path("runs") / f"eval-{cfg.model.name}"
    return Plan(
        model_cfg=model_cfg,
        quant_cfg=quant_cfg,
        model=model_plan(model_cfg, quant_cfg, hardware.detect(), path),  # also checks the quantization
        adapter=adapter,
        tokenizer_source=tokenizer_source,
        prompt_format=run_cfg.dataset.prompt_format if run_cfg else "chat_template",
        max_length=run_cfg.trainer.max_length if run_cfg else None,
        out_dir=out_dir,
        run_dir=run_dir,
        rows_file=Path(cfg.rows) if cfg.rows else None,
    )


def load_tokenizer(plan: Plan):
    return modeling.load_tokenizer(plan.model_cfg, path=plan.tokenizer_source)


def load_models(plan: Plan, merge: bool, compare_base: bool):
    """Yield (label, model): "base" first when asked for (or alone for a preset), then "adapter". With `merge`
    the adapter is folded into the base after its quantized weights are dequantized to the model dtype: the
    same function the run trained, without the 4-bit kernels' per-token cost at generation time."""
    base = runs.load_base(plan.model, dequantize=merge)
    if plan.adapter is None:
        yield "base", base
        return
    if compare_base:
        yield "base", base
    log.info("adding the adapter %s (%s)", plan.adapter, "merged" if merge else "unmerged")
    yield "adapter", runs.add_adapter(base, plan.adapter, merge)
