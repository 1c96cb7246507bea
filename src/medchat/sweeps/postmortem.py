"""After a sweep job's process ends: its final status, and no W&B run left looking alive.

A job that raises writes `status` failed itself and finishes its W&B run as failed (medchat.pipeline).
A job killed hard (out of memory, SIGKILL, a node lost) runs no `finally`: its status still says
`running` and its W&B run was never finished. Then the launcher writes `status` failed with the exit code
or signal, and re-opens the job's W&B run (same id, `resume="allow"`) only to finish it with exit code 1
and the reason in its summary. Online, the run shows as failed at once instead of "crashed" after W&B's
heartbeat timeout; offline, a small extra `offline-run-*-<id>-N` dir holds that closing record and
`wandb sync` merges it into the same run.

    python -m medchat.sweeps.postmortem RUN_DIR WANDB_RUN_ID "reason"   # what the launcher runs
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from medchat.rundir import read_status, write_status


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if returncode == -signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    if returncode > 128 and returncode - 128 in {s.value for s in signal.Signals}:
        return f"exit code {returncode} (a child process was killed by {signal.Signals(returncode - 128).name})"
    return f"exit code {returncode}"


def last_error_line(log_path: Path) -> str:
    if not log_path.exists():
        return ""
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()[-200:] if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "error:" in line or "Exception" in line:
            return line[:500]
    return ""


def _written_since(status: dict | None, started: float) -> bool:
    if status is None or "time" not in status:
        return False
    return datetime.fromisoformat(status["time"]).timestamp() >= int(started)


def finalize(run_dir: Path, returncode: int, started: float, log_path: Path, wandb_run_id: str | None,
             env: dict | None = None) -> dict:
    """The job's final status (written to RUN/status when the job could not write it itself)."""
    from medchat.preemption import EXIT_INTERRUPTED

    status = read_status(run_dir)
    if returncode == 0 and status is not None and status["state"] == "done":
        return status
    if returncode == EXIT_INTERRUPTED and status is not None and status["state"] == "interrupted":
        return status  # stopped on a signal after its checkpoint: the job's own account; it resumes next time
    if returncode == 0:
        state = status["state"] if status else "missing"
        reason = f"exited 0 but its status is {state}"
    elif status is not None and status["state"] == "failed" and _written_since(status, started):
        reason = status.get("reason", "")  # the job's own account of the failure
        write_status(run_dir, "failed", reason=reason, exit=describe_exit(returncode))
        return read_status(run_dir)
    else:
        reason = describe_exit(returncode)
        detail = last_error_line(log_path)
        if detail:
            reason += f"; last error in the log: {detail}"
    details = {"reason": reason, "exit": describe_exit(returncode)}
    if wandb_run_id and list(run_dir.glob(f"wandb/*run-*-{wandb_run_id}")):
        details["wandb"] = close_wandb_run(run_dir, wandb_run_id, reason, env)
    write_status(run_dir, "failed", **details)
    return read_status(run_dir)


def close_wandb_run(run_dir: Path, run_id: str, reason: str, env: dict | None = None) -> str:
    """Finish a killed job's W&B run as failed, in a child process (W&B state stays out of the launcher)."""
    import time

    import os

    cmd = [sys.executable, "-m", "medchat.sweeps.postmortem", str(run_dir), run_id, reason]
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "WANDB_SERVICE"}  # own wandb-core
    # The job's own wandb-core (never a shared one: WANDB_SERVICE is dropped) can outlive a SIGKILL for a few
    # seconds and still hold the run id ("run ID ... is in use"); it exits once its parent is gone, so retry.
    deadline = time.monotonic() + 90
    while True:
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            return f"run {run_id} left unfinished: closing it timed out"
        if out.returncode == 0:
            return f"run {run_id} finished as failed by the launcher"
        last = (out.stderr.strip().splitlines() or ["?"])[-1][:300]
        if "is in use" not in last or time.monotonic() > deadline:
            return f"run {run_id} left unfinished: {last}"
        time.sleep(5)


def _close(run_dir: Path, run_id: str, reason: str) -> None:
    import os

    import wandb
    from omegaconf import OmegaConf

    from medchat.runs import read_config
    from medchat.sweeps.state import read_job
    from medchat.config import flatten
    from medchat.tracking import wandb_mode

    cfg = OmegaConf.to_container(read_config(run_dir, on_schema=False), resolve=False)  # the job may have died before its adapter
    tracker = cfg["tracker"]
    offline = any(p.name.startswith("offline-run-") for p in run_dir.glob(f"wandb/*run-*-{run_id}"))
    os.environ.setdefault("WANDB_SILENT", "true")
    record = read_job(run_dir) or {}
    run = wandb.init(
        id=run_id,
        resume="allow",
        project=tracker["project"],
        entity=tracker["entity"],
        group=tracker["group"],
        name=tracker["name"] or run_dir.name,
        tags=[*tracker["tags"], *record.get("overrides", [])][:64],
        config={**flatten(cfg), "run_dir": str(run_dir)},
        dir=str(run_dir),
        mode="offline" if offline else wandb_mode(tracker["mode"]),
    )
    run.summary["medchat/failure"] = reason
    run.finish(exit_code=1)
    print(json.dumps({"closed": run_id}))


if __name__ == "__main__":
    _close(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
