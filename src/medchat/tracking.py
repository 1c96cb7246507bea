"""Experiment tracking: W&B (online or offline), TensorBoard, or none.

medchat starts the W&B run itself, on the main process only, before the trainer exists, so the run
carries the whole flattened config, the data counts, the resolved run plan (RUN/plan.json, where present)
and the run dir; transformers' WandbCallback then logs into that run. `finish()` always closes it,
marking a crashed run failed, so that in a Hydra multirun every job gets its own run and none is left open.

Dashboard rows read well: a sweep job is named by what differs between the sweep's jobs
(`r8-lr1e-4-all_linear`, medchat.sweeps.naming, handed over by the launcher as WANDB_NAME) and grouped by
the sweep; a single run is `<experiment or model>-<dataset>-<run dir name>`. Tags: the experiment, model,
dataset, tracker.tags and the overrides. The run's id is kept in RUN/wandb_run_id, so that a resumed run
and `evaluate.py` (job_type eval data in the same run: medchat.evaluation.wandb_table) log into one row.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medchat.atomic import write_text
from medchat.config import flatten
from medchat.rundir import multirun_sweep_dir

log = logging.getLogger(__name__)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def wandb_mode(mode: str) -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


RUN_ID_FILE = "wandb_run_id"


def saved_run_id(run_dir: Path) -> str | None:
    """The W&B run id of this run dir, the one place it is kept (RUN/wandb_run_id, written when training's
    W&B run starts): a resumed attempt continues that run, and evaluate.py logs its table into it."""
    path = Path(run_dir) / RUN_ID_FILE
    return path.read_text().strip() or None if path.exists() else None


def run_id_for(run_dir: Path) -> str | None:
    """The id training's W&B run takes: the sweep launcher's (WANDB_RUN_ID, also in its job.json), else the
    one an earlier attempt saved, else None (W&B makes a new one, which Tracker then saves)."""
    return os.environ.get("WANDB_RUN_ID") or saved_run_id(run_dir)


def run_name(tracker_cfg, config: dict, run_dir: Path, overrides: list[str]) -> str:
    """tracker.name, else the sweep launcher's name for this job, else a readable default."""
    from medchat.sweeps.naming import single_name

    if tracker_cfg.name:
        return tracker_cfg.name
    if os.environ.get("WANDB_NAME"):  # the medchat launcher's name: what differs between the sweep's jobs
        return os.environ["WANDB_NAME"]
    if multirun_sweep_dir() is not None:  # an in-process launcher knows only this job's overrides
        return single_name(overrides, run_dir.name)
    lead = config.get("experiment_name") or config.get("model", {}).get("name") or "medchat"
    return f"{lead}-{config.get('dataset', {}).get('name', 'data')}-{run_dir.name}"


def run_group(tracker_cfg) -> str | None:
    if tracker_cfg.group:
        return tracker_cfg.group
    if os.environ.get("WANDB_RUN_GROUP"):  # set by the medchat launcher to the sweep dir's name
        return os.environ["WANDB_RUN_GROUP"]
    sweep = multirun_sweep_dir()
    return sweep.name if sweep is not None else None


def run_tags(tracker_cfg, config: dict, overrides: list[str]) -> list[str]:
    lead = [config.get("experiment_name"), config.get("model", {}).get("name"),
            config.get("dataset", {}).get("name")]
    tags = []
    for t in [*tracker_cfg.tags, *lead, *overrides]:
        if t and str(t)[:64] not in tags:
            tags.append(str(t)[:64])  # W&B refuses tags over 64 characters
    return tags[:64]


def read_plan(run_dir: Path) -> dict:
    """RUN/plan.json (the resolved `auto` choices), when the pipeline wrote one."""
    from medchat.plan import read_saved

    return read_saved(run_dir) or {}


class Tracker:
    def __init__(self, tracker_cfg, run_dir: Path, config: dict, overrides: list[str], extra: dict | None = None):
        self.cfg = tracker_cfg
        self.run_dir = run_dir
        self.run = None
        if tracker_cfg.backend == "tensorboard":
            os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
        if tracker_cfg.backend != "wandb":
            return
        # Every rank sees the same settings; only rank 0 creates a run (WandbCallback logs on rank 0 only).
        os.environ["WANDB_DIR"] = str(run_dir)
        os.environ["WANDB_MODE"] = wandb_mode(tracker_cfg.mode)
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ["WANDB_LOG_MODEL"] = "false"
        if not is_main_process():
            return
        import wandb

        run_id = run_id_for(run_dir)  # a resumed run continues its W&B run
        plan = read_plan(run_dir)
        self.run = wandb.init(
            project=tracker_cfg.project,
            entity=tracker_cfg.entity,
            group=run_group(tracker_cfg),
            name=run_name(tracker_cfg, config, run_dir, overrides),
            job_type="train",
            tags=run_tags(tracker_cfg, config, overrides),
            config={**flatten(config), **flatten(extra or {}), **flatten({"plan": plan} if plan else {}),
                    "run_dir": str(run_dir)},
            dir=str(run_dir),
            mode=os.environ["WANDB_MODE"],
            id=run_id,
            resume="allow" if run_id else None,
        )
        write_text(run_dir / RUN_ID_FILE, self.run.id + "\n")

    @property
    def description(self) -> str:
        if self.run is None:
            return {"tensorboard": f"tensorboard --logdir {self.run_dir / 'tensorboard'}"}.get(self.cfg.backend, "none")
        if self.run.settings.mode == "offline":
            return f"W&B offline run {self.run.id} in {self.run.dir}; upload with: wandb sync {Path(self.run.dir).parent}"
        return f"W&B run {self.run.url}"

    def log_summary(self, metrics: dict) -> None:
        if self.run is not None:
            self.run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})

    def log_model(self, adapter_dir: Path) -> None:
        """tracker.log_model=true: upload the adapter folder as a W&B model artifact of this run."""
        if self.run is None or not getattr(self.cfg, "log_model", False):
            return
        import wandb

        artifact = wandb.Artifact(f"adapter-{self.run.id}", type="model",
                                  metadata={"run_dir": str(self.run_dir)})
        artifact.add_dir(str(adapter_dir))
        self.run.log_artifact(artifact, aliases=["latest"])

    def finish(self, failed: bool = False, preempted_exit_code: int | None = None) -> None:
        """Close the run: finished, failed, or (preempted_exit_code set) preempted, which W&B shows as
        "preempted" rather than "failed" and which the next attempt resumes under the same id."""
        if self.run is not None:
            if preempted_exit_code is not None:
                self.run.mark_preempting()
                self.run.finish(exit_code=preempted_exit_code)
            else:
                self.run.finish(exit_code=1 if failed else 0)
            self.run = None


def wandb_records(run_dir: str | Path, kind: str, which: int | None = None) -> list[dict]:
    """Records of one type ("history", "run", "summary", ...) that the offline W&B sessions of a run dir wrote,
    read back from their .wandb files (no server needed). `which`: one session's folder, in start order (-1: the
    latest); None: every session in order (a resumed run, then evaluate.py, each add a folder)."""
    return wandb_records_by_kind(run_dir, which).get(kind, [])


def wandb_records_by_kind(run_dir: str | Path, which: int | None = None) -> dict[str, list[dict]]:
    """All of wandb_records' record types at once ({type: records}): one read of the files per session."""
    import json
    import shutil
    import subprocess
    import sys

    runs = sorted(p for p in Path(run_dir).glob("wandb/*run-*") if p.is_dir())
    if not runs:
        raise FileNotFoundError(f"no W&B run under {run_dir}/wandb")
    exe = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    records: dict[str, list[dict]] = {}
    for folder in runs if which is None else [runs[which]]:
        out = subprocess.run([exe, "leet", "inspect", "--json", str(folder)], capture_output=True, text=True,
                             check=True, timeout=120).stdout
        for line in out.splitlines():
            record = json.loads(line)
            kind = record.get("type")
            if kind in record:
                records.setdefault(kind, []).append(record[kind])
    return records


def wandb_history(run_dir: str | Path) -> list[dict]:
    """The metric rows an offline W&B run logged, over all its sessions."""
    return [r["item"] for r in wandb_records(run_dir, "history")]
