"""The run dir: its name, fixed before training starts and shared by all ranks, and its status file.

Hydra's `${now:...}` is resolved by each process, so under `accelerate launch` every rank would pick its
own directory. `${medchat_run_id:}` instead agrees across the ranks of one launch: rank 0's
timestamp is written to a file keyed by the launch (torchrun's run id, or the master address and port)
and the other ranks read it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from medchat.atomic import write_text

STATUS_FILE = "status"
PLAN_FILE = "plan.json"  # the attempt's run plan (medchat.plan), written by medchat.attempt


def _timestamp() -> str:
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def _launcher_id() -> str:
    """The launching agent (torchrun, accelerate launch) is the parent of every local rank: its pid and start
    time tell this launch from earlier ones. (`accelerate launch` sets TORCHELASTIC_RUN_ID to "none" for every
    launch, so that alone made every launch reuse the first launch's run id.)"""
    ppid = os.getppid()
    try:
        start = Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # field 22: start time
    except (OSError, IndexError):
        start = ""
    return f"{ppid}-{start}"


def _launch_key() -> str | None:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    run = os.environ.get("TORCHELASTIC_RUN_ID", "")
    key = "{}-{}-{}-{}".format("" if run == "none" else run, os.environ.get("MASTER_ADDR", ""),
                               os.environ.get("MASTER_PORT", ""), _launcher_id())
    return "".join(c if c.isalnum() else "_" for c in key)


def run_id() -> str:
    """A name for this run's directory: MEDCHAT_RUN_ID, else one timestamp shared by all local ranks."""
    if os.environ.get("MEDCHAT_RUN_ID"):
        return os.environ["MEDCHAT_RUN_ID"]
    key = _launch_key()
    if key is None:
        return _timestamp()
    path = Path(tempfile.gettempdir()) / f"medchat-run-id-{key}"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        for _ in range(200):  # the first rank may still be writing
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.05)
        raise RuntimeError(f"{path} stayed empty: cannot agree on a run dir across ranks; set hydra.run.dir")
    stamp = _timestamp()
    with os.fdopen(fd, "w") as f:
        f.write(stamp)
    return stamp


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("medchat_run_id"):
        # use_cache: one value per process, however often Hydra resolves hydra.run.dir
        OmegaConf.register_new_resolver("medchat_run_id", run_id, use_cache=True)


def multirun_sweep_dir() -> Path | None:
    """The sweep dir when this job runs inside a Hydra multirun in this process (basic/submitit launchers)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(str(HydraConfig.get().sweep.dir))
    return None


def read_status(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / STATUS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_status(run_dir: str | Path, state: str, **details) -> None:
    """running | done | failed | interrupted, with details (reason, time; signal and step); written atomically."""
    write_text(Path(run_dir) / STATUS_FILE,
               json.dumps({"state": state, "time": datetime.now().isoformat(timespec="seconds"), **details}))


class RunDirInUse(RuntimeError):
    """Training into a run dir that already holds a run it may not continue (medchat.resume.decide)."""
