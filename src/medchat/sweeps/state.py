"""Which job lives in which run dir of a sweep, and what a re-run does with it.

A sweep job is identified by its override set (launching knobs such as `launcher.parallel` and
`trainer.resume` left out), recorded in RUN/job.json when the job is first placed. A re-run of the same
sweep into the same sweep dir finds each job's dir by that identity, never by position, so adding a value
to an axis cannot make one job pick up another's dir. Then:

    status done             -> skip (its metrics.json is the result)
    status running | failed | interrupted -> resume from the last checkpoint, or start again from step 0
                            if there is none (trainer.resume=auto)
    no status               -> fresh start

Used by the medchat launcher (jobs in child processes) and by train.py in a multirun whose launcher runs
jobs in-process (Hydra's basic or submitit launchers), so that every launcher skips and resumes alike.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from medchat.rundir import read_status

JOB_FILE = "job.json"
# Keys that change how a job is launched, not what it computes.
LAUNCH_KEYS = ("launcher.parallel", "launcher.gpus_per_job", "launcher.pack", "trainer.resume")
SEED_KEYS = ("trainer.seed", "dataset.seed")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def identity(overrides) -> list[str]:
    """The overrides that define what a job computes, in a canonical order."""
    return sorted(o for o in overrides if not o.startswith("hydra.") and not o.startswith("hydra/")
                  and override_key(o) not in LAUNCH_KEYS)


def read_job(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / JOB_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_job(run_dir: str | Path, record: dict) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (JOB_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(run_dir / JOB_FILE)


def begin_attempt(run_dir: str | Path, attempt: dict, pid: int) -> None:
    """Append how the job was started this time to RUN/job.json's attempts, and note the running pid."""
    record = read_job(run_dir) or {}
    write_job(run_dir, {**record, "pid": pid, "attempts": [*record.get("attempts", []), attempt]})


def end_attempt(run_dir: str | Path, returncode: int, seconds: float, state: str) -> None:
    """Close the job's last attempt in RUN/job.json (end, exit code, seconds, the state it ended in); no pid."""
    from datetime import datetime

    record = read_job(run_dir) or {}
    if record.get("attempts"):
        record["attempts"][-1].update(end=datetime.now().isoformat(timespec="seconds"), returncode=returncode,
                                      seconds=round(seconds, 1), state=state)
    record.pop("pid", None)
    write_job(run_dir, record)


def new_wandb_id() -> str:
    # W&B's own id alphabet; fixed before launch so every attempt of a job logs into one W&B run.
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class JobDirConflict(RuntimeError):
    pass


def existing_jobs(sweep_dir: str | Path) -> dict[tuple, Path]:
    """identity -> run dir, for every job already placed in the sweep dir."""
    found = {}
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return found
    paths = [p for depth in ("*", "*/*", "*/*/*") for p in sweep_dir.glob(f"{depth}/{JOB_FILE}")]
    for path in sorted(paths):
        record = json.loads(path.read_text())
        found[tuple(record["overrides"])] = path.parent
    return found


def place(sweep_dir: str | Path, overrides, wanted_subdir: str, taken: set[str]) -> Path:
    """The run dir of one job: the dir already holding this job, else `wanted_subdir` (Hydra's
    hydra.sweep.subdir) if free, else the next free name. `taken` collects names placed in this batch."""
    sweep_dir = Path(sweep_dir)
    ident = tuple(identity(overrides))
    known = existing_jobs(sweep_dir)
    if ident in known:
        taken.add(str(known[ident].relative_to(sweep_dir)))
        return known[ident]
    used = taken | {str(p.relative_to(sweep_dir)) for p in known.values()}

    def free(name: str) -> bool:
        return name not in used and not (sweep_dir / name / "status").exists()

    name = wanted_subdir
    if not free(name):
        if name.isdigit():
            numbers = [int(n) for n in used if n.isdigit()] + [int(name)]
            name = str(max(numbers) + 1)
        k = 1
        while not free(name):
            name = f"{wanted_subdir}-{k}"
            k += 1
    taken.add(name)
    return sweep_dir / name


@dataclass
class Plan:
    action: str  # fresh | resume | skip
    run_dir: Path
    reason: str = ""


def plan(run_dir: str | Path) -> Plan:
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status is None:
        return Plan("fresh", run_dir)
    if status["state"] == "done" and (run_dir / "metrics.json").exists():
        return Plan("skip", run_dir, "already done")
    return Plan("resume", run_dir, f"previous attempt {status['state']}: {status.get('reason', '')}".strip(": "))


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def rejoin(cfg) -> dict | None:
    """For train.py in a multirun run by an in-process launcher (basic, submitit): record this job's
    identity, return a finished job's metrics, or set trainer.resume for an unfinished one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    ident = identity(hc.overrides.task)
    record = read_job(run_dir)
    if record is not None and record["overrides"] != ident:
        raise JobDirConflict(
            f"{run_dir} holds another job ({' '.join(record['overrides'])}), not {' '.join(ident)}: "
            "this sweep's jobs are numbered differently from the one already there; use a new hydra.sweep.dir"
        )
    if record is None:
        write_job(run_dir, {"overrides": ident, "num": hc.job.num, "launcher": "in-process"})
    decision = plan(run_dir)
    if decision.action == "skip":
        print(f"{run_dir}: already done, skipped")
        return read_metrics(run_dir)
    if decision.action == "resume":
        cfg.trainer.resume = "auto"
    return None


def gpu_ids(explicit: str | None = None) -> list[str]:
    """GPUs the launcher may hand out: hydra.launcher.gpus, else CUDA_VISIBLE_DEVICES, else nvidia-smi -L."""
    import shutil
    import subprocess

    spec = explicit if explicit is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is not None:
        return [g.strip() for g in str(spec).split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
