"""evaluate.py's config -> what to load and where to write, with every check that needs no weights.

The run is opened through medchat.runs (its config); its adapter is checked against the base on the meta
device and the models are built, for generation on this machine, by medchat.run_models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from medchat import hardware, launch_checks, modeling, run_models, runs
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
    run: runs.Run | None  # the opened run whose rows are scored (None: model=<preset> rows.path=FILE alone)
    rows_file: Path | None  # rows.path=FILE (else the run's held-out rows)
    merged: Path | None = None  # artifact=RUN/export/merged: this folder is the fine-tuned model, as shipped
    artifact: dict | None = None  # what "adapter" is in the outputs: {"kind", "path"}

    @property
    def model_path(self) -> str:
        return self.model.path


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
    none = OmegaConf.structured(QuantConfig(mode="none"))
    if cfg.model is not None:  # a preset base model, no adapter (on the run's rows when run_dir is set)
        run = runs.open_run(run_dir, need_adapter=False) if run_dir else None
        run_cfg = run.cfg if run else None
        model_cfg, quant_cfg, adapter, tokenizer_source = cfg.model, cfg.quant or none, None, None
        launch_checks.check_model_reachable(model_cfg.name_or_path, model_cfg.revision)  # before any weight load
        path = modeling.model_path(model_cfg)
    else:
        run = runs.open_run(run_dir)
        run_cfg = run.cfg
        model_cfg, quant_cfg, adapter = run_cfg.model, cfg.quant or run_cfg.quant, run.adapter
        path = run_models.base_path(run, cfg.base_model)
        # base_model= relocates the base: its name may differ, the shapes still have to fit
        run_models.check_adapter_base(adapter, model_cfg, path, check_name=cfg.base_model is None,
                                where="base_model=" if cfg.base_model else f"model.name_or_path in {run.config_file}")
        tokenizer_source = str(adapter)
    merged, artifact = None, None
    if cfg.model is None:
        artifact = {"kind": f"run adapter, {'merged into the base (quantized weights dequantized first)' if cfg.merge else 'unmerged'}",
                    "path": str(adapter)}
    if cfg.artifact:
        exported = Path(cfg.artifact)
        if runs.artifact_kind(exported) == "adapter":
            run_models.check_adapter_base(exported, model_cfg, path, check_name=cfg.base_model is None,
                                    where="base_model=" if cfg.base_model else "the run's model.name_or_path")
            adapter = exported
            artifact = {"kind": "exported adapter", "path": str(exported)}
        else:  # the merged model itself; the run's adapter is not used
            merged, adapter = exported, None
            artifact = {"kind": "exported merged model, loaded as saved", "path": str(exported)}
        tokenizer_source = str(exported)
    if cfg.out_dir:
        out_dir = Path(cfg.out_dir)
    else:
        out_dir = (run_dir if run_dir is not None else Path("runs")) / "eval" / eval_name(cfg)
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
        run=run,
        rows_file=Path(cfg.rows.path) if cfg.rows.path else None,
        merged=merged,
        artifact=artifact,
    )


def load_tokenizer(plan: Plan):
    return modeling.load_tokenizer(plan.model_cfg, path=plan.tokenizer_source)


def load_models(plan: Plan, merge: bool, compare_base: bool):
    """Yield (label, model): "base" first when asked for (or alone for a preset), then "adapter". With `merge`
    the adapter is folded into the base after its quantized weights are dequantized to the model dtype (the
    trained weights exactly), each W + delta rounded once to that dtype: without the 4-bit kernels' per-token
    cost, and in bf16 not exactly the trained function (deltas below half a bf16 step of their weight vanish;
    bench/RESULTS.md, merge fidelity, measured how much that moves perplexity). Without `merge`, the quantized
    base with the adapter beside it computes what the run trained. With
    `artifact=RUN/export/merged`, "adapter" is that exported folder, loaded as saved (16-bit, unquantized)."""
    if plan.merged is not None:  # what ships: its saved weights, not the run's adapter on the quantized base
        if compare_base:
            yield "base", run_models.load_base(plan.model, dequantize=merge)
        none = OmegaConf.structured(QuantConfig(mode="none"))
        yield "adapter", run_models.load_base(model_plan(plan.model_cfg, none, hardware.detect(), str(plan.merged)))
        return
    base = run_models.load_base(plan.model, dequantize=merge)
    if plan.adapter is None:
        yield "base", base
        return
    if compare_base:
        yield "base", base
    log.info("adding the adapter %s (%s)", plan.adapter, "merged" if merge else "unmerged")
    yield "adapter", run_models.add_adapter(base, plan.adapter, merge)
