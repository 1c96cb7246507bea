"""Experiment tracking: W&B (online or offline), TensorBoard, or none.

medchat starts the W&B run itself, on the main process only, before the trainer exists, so the run
carries the whole flattened config, the overrides as tags and the run dir; transformers' WandbCallback
then logs into that run. `finish()` always closes it, marking a crashed run failed, so that in a Hydra
multirun every job gets its own run and none is left open.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


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


class Tracker:
    def __init__(self, tracker_cfg, run_dir: Path, config: dict, overrides: list[str], run_id: str | None = None):
        """`run_id`: the W&B run id kept in the run dir, so that a resumed run continues the same W&B run."""
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

        self.run = wandb.init(
            project=tracker_cfg.project,
            entity=tracker_cfg.entity,
            group=tracker_cfg.group,
            name=tracker_cfg.name or run_dir.name,
            tags=[t[:64] for t in [*tracker_cfg.tags, *overrides]][:64],  # W&B refuses tags over 64 characters
            config={**flatten(config), "run_dir": str(run_dir)},
            dir=str(run_dir),
            mode=os.environ["WANDB_MODE"],
            id=run_id,
            resume="allow" if run_id else None,
        )

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


def wandb_run_id(previous: str | None = None) -> str:
    """The id this run dir's W&B run has: the sweep launcher's (WANDB_RUN_ID), the one saved by an earlier
    attempt, else a new one."""
    if os.environ.get("WANDB_RUN_ID"):
        return os.environ["WANDB_RUN_ID"]
    if previous:
        return previous
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def wandb_history(run_dir: str | Path) -> list[dict]:
    """The metric rows an offline W&B run logged, read back from its .wandb file (no server needed)."""
    import json
    import shutil
    import subprocess
    import sys

    runs = sorted(Path(run_dir).glob("wandb/*run-*"))
    if not runs:
        raise FileNotFoundError(f"no W&B run under {run_dir}/wandb")
    exe = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    out = subprocess.run([exe, "leet", "inspect", "--json", str(runs[-1])], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    rows = []
    for line in out.splitlines():
        if '"type":"history"' in line:
            rows.append(json.loads(line)["history"]["item"])
    return rows
