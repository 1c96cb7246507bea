"""Run sweep jobs as child processes, several at a time, each on its own GPUs or CPU share.

Each job is `python SCRIPT <overrides> hydra.run.dir=RUN` (one process), or `accelerate launch
--num_processes K ... SCRIPT ...` when it gets K > 1 GPUs or accelerate arguments. It runs in its own
process group, with its output in RUN/console.log, so a crash, an out-of-memory kill or a hung job
touches no other job, and its GPU memory is freed when it exits. A job's GPUs are handed to it through
CUDA_VISIBLE_DEVICES; on CPU, OMP_NUM_THREADS shares the cores between the jobs running together.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from medchat.sweeps import postmortem
from medchat.sweeps.state import begin_attempt, end_attempt

log = logging.getLogger(__name__)
LOG_FILE = "console.log"


@dataclass
class Job:
    num: int
    overrides: list[str]  # the job's task overrides, as the sweeper gave them
    identity: list[str]
    run_dir: Path
    action: str  # fresh | resume | skip
    command: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    wandb_run_id: str | None = None
    wandb_name: str | None = None  # what differs from the sweep's other jobs (medchat.sweeps.naming)
    status: dict | None = None
    seconds: float = 0.0
    gpus: str = ""


@dataclass
class Slot:
    index: int
    gpus: list[str]  # empty: a CPU slot


def make_slots(gpus: list[str], gpus_per_job: int, parallel: int) -> list[Slot]:
    """GPU machine: as many jobs at a time as whole groups of `gpus_per_job` GPUs fit. CPU: `parallel`."""
    if gpus and gpus_per_job > 0:
        if gpus_per_job > len(gpus):
            raise ValueError(f"launcher.gpus_per_job={gpus_per_job} but only {len(gpus)} GPUs are visible "
                             f"({','.join(gpus)})")
        n = len(gpus) // gpus_per_job
        return [Slot(i, gpus[i * gpus_per_job:(i + 1) * gpus_per_job]) for i in range(n)]
    if parallel < 1:
        raise ValueError(f"launcher.parallel must be >= 1, got {parallel}")
    return [Slot(i, []) for i in range(parallel)]


def command(script: str, job_args: list[str], n_processes: int, port: int, accelerate_args: list[str]) -> list[str]:
    if n_processes <= 1 and not accelerate_args:
        return [sys.executable, script, *job_args]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(max(n_processes, 1)),
              "--num_machines", "1", "--main_process_port", str(port)]
    if not any(a.startswith("--config_file") for a in accelerate_args):
        # defaults that work without an `accelerate config` file; precision is the trainer config's business
        launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
        if n_processes > 1:
            launch.append("--multi_gpu")
    return [*launch, *accelerate_args, script, *job_args]


def job_env(base: dict, slot: Slot, n_slots: int, job: Job, sweep_name: str) -> dict:
    env = dict(base)
    # Each job starts its own wandb-core. An inherited WANDB_SERVICE (set by any wandb.init in the
    # launching process, e.g. pytest or a notebook) would make every job share one service, where a
    # SIGKILLed job's run stays registered and its id "in use" until that service exits.
    env.pop("WANDB_SERVICE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["MEDCHAT_RUN_ID"] = job.run_dir.name
    env.setdefault("WANDB_RUN_GROUP", sweep_name)  # tracker.group, when set, still wins (explicit init arg)
    if job.wandb_name:
        env["WANDB_NAME"] = job.wandb_name  # tracker.name, when set, still wins
    if job.wandb_run_id:
        env["WANDB_RUN_ID"] = job.wandb_run_id
        env["WANDB_RESUME"] = "allow"
    if slot.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
        if "OMP_NUM_THREADS" not in base:
            env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // n_slots))
    return env


PROGRESS_LINE = re.compile(r"^step (\d+)/(\d+) \((\d+)%\): (.*)$", re.M)


def last_progress(log_file: Path, tail_bytes: int = 16384) -> str | None:
    """A job's latest progress from its console.log: medchat.progress's compact line (a job's console is not a
    terminal), shortened to step, share and time left; None before its first logged step."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    matches = PROGRESS_LINE.findall(text)
    if not matches:
        return None
    step, total, share, rest = matches[-1]
    left = re.search(r"~\S+ left", rest)
    loss = re.match(r"loss (\S+?),", rest + ",")
    return f"step {step}/{total} ({share}%)" + (f", loss {loss.group(1)}" if loss else "") + \
        (f", {left.group(0)}" if left else "")


class Runner:
    """Starts jobs as slots free up, waits for them, and finalizes each one's status; every `progress_s`
    seconds it logs each running job's progress (from its console.log) when that changed."""

    def __init__(self, slots: list[Slot], sweep_name: str, script: str, base_args: list[str],
                 accelerate_args: list[str], poll_s: float = 0.5, progress_s: float = 30.0):
        self.progress_s = progress_s
        self.slots = slots
        self.sweep_name = sweep_name
        self.script = script
        self.base_args = base_args
        self.accelerate_args = accelerate_args
        self.poll_s = poll_s

    def job_args(self, job: Job) -> list[str]:
        args = [*self.base_args, *job.overrides, f"hydra.run.dir={job.run_dir}"]
        if job.action == "resume":
            args.append("trainer.resume=auto")  # a checkpoint if there is one, else from step 0
        return args

    def _start(self, job: Job, slot: Slot) -> tuple[subprocess.Popen, float]:
        n_proc = len(slot.gpus) if slot.gpus else 1
        job.command = command(self.script, self.job_args(job), n_proc, 29500 + slot.index, self.accelerate_args)
        job.env = job_env(os.environ, slot, len(self.slots), job, self.sweep_name)
        job.gpus = ",".join(slot.gpus)
        job.run_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        logf = open(job.run_dir / LOG_FILE, "a")
        logf.write(f"\n===== medchat launcher: {job.action} at {datetime.now().isoformat(timespec='seconds')}"
                   f" on {('GPUs ' + job.gpus) if job.gpus else 'CPU'}\n$ {' '.join(job.command)}\n")
        logf.flush()
        proc = subprocess.Popen(job.command, env=job.env, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
        logf.close()
        begin_attempt(job.run_dir, {"action": job.action, "start": datetime.now().isoformat(timespec="seconds"),
                                    "gpus": job.gpus, "command": job.command}, proc.pid)
        log.info("#%d %s: %s -> %s", job.num, job.action, " ".join(job.identity), job.run_dir)
        return proc, started

    def _finish(self, job: Job, returncode: int, started: float) -> None:
        job.seconds = time.time() - started
        job.status = postmortem.finalize(job.run_dir, returncode, started, job.run_dir / LOG_FILE,
                                         job.wandb_run_id, job.env)
        end_attempt(job.run_dir, returncode, job.seconds, job.status["state"])
        log.info("#%d %s after %.0fs%s", job.num, job.status["state"], job.seconds,
                 f": {job.status.get('reason')}" if job.status["state"] != "done" else "")

    def run(self, jobs: list[Job]) -> None:
        pending = [j for j in jobs if j.action != "skip"]
        free = list(self.slots)
        running: dict[int, tuple[Job, subprocess.Popen, float, Slot]] = {}
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM too must reach `finally`
        shown: dict[int, str] = {}
        next_progress = time.time() + self.progress_s
        try:
            while pending or running:
                while pending and free:
                    job, slot = pending.pop(0), free.pop(0)
                    proc, started = self._start(job, slot)
                    running[proc.pid] = (job, proc, started, slot)
                time.sleep(self.poll_s)
                for pid, (job, proc, started, slot) in list(running.items()):
                    if proc.poll() is not None:
                        del running[pid]
                        self._finish(job, proc.returncode, started)
                        free.append(slot)
                        free.sort(key=lambda s: s.index)
                if time.time() >= next_progress:
                    next_progress = time.time() + self.progress_s
                    for job, _, started, _ in running.values():
                        now = last_progress(job.run_dir / LOG_FILE)
                        if now and shown.get(job.num) != now:
                            shown[job.num] = now
                            log.info("#%d running %.0fs: %s", job.num, time.time() - started, now)
        finally:
            # Interrupted (Ctrl-C, SIGTERM to the sweep): leave no job running on its own. A job given SIGTERM
            # finishes its step and saves a checkpoint (medchat.preemption) within the grace period.
            for job, proc, started, _ in running.values():
                _stop(proc)
                self._finish(job, proc.returncode if proc.returncode is not None else -signal.SIGKILL, started)
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"sweep stopped by signal {signum}")


def _stop(proc: subprocess.Popen, grace_s: float = 120.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
