"""What every training stage (SFT, DPO, ORPO) writes into its run dir around its training, in one place.

Before the first step: status `running`, config.yaml, split.json, eval.jsonl (the held-out conversations
evaluate.py answers) and provenance.json; the tracker is started. After: metrics.json and status `done`, or
status `failed` with the reason. The stages differ only in the `fit` they hand in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from medchat import perf, provenance, rundir
from medchat.tracking import Tracker, is_main_process


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def wait_for_all_ranks() -> None:
    if perf.world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def claim(run_dir: Path, resume: bool) -> None:
    rundir.claim(run_dir, resume=resume)
    wait_for_all_ranks()  # every rank has checked the run dir before the main one writes its status


def record_run(cfg, run_dir: Path, split, fit: Callable[[Tracker], dict]) -> dict:
    """Write the run dir's inputs, call fit(tracker), write its outputs; return the final metrics."""
    main = is_main_process()
    run_dir.mkdir(parents=True, exist_ok=True)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    if main:
        rundir.write_status(run_dir, "running")
        # what evaluate.py, chat and export read (also when train() is called without Hydra's .hydra/)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        write_json(run_dir / "split.json", split.manifest())
        with open(run_dir / "eval.jsonl", "w") as f:
            for r in split.eval:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        write_json(run_dir / "provenance.json", provenance.collect(split.fingerprint, split.source))
    tracker = Tracker(cfg.tracker, run_dir, plain_cfg, hydra_overrides(), extra={"data": split.counts})
    try:
        metrics = fit(tracker)
    except BaseException as e:
        if main:
            rundir.write_status(run_dir, "failed", reason=f"{type(e).__name__}: {e}"[:2000])
        tracker.finish(failed=True)
        raise
    tracker.log_summary(metrics)
    if main:
        tracker.log_model(run_dir / "adapter")
    metrics["tracker"] = tracker.description
    metrics["run_dir"] = str(run_dir)
    if main:
        write_json(run_dir / "metrics.json", metrics)
        rundir.write_status(run_dir, "done")
    tracker.finish()
    return metrics
