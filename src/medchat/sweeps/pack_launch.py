"""The medchat launcher's side of launcher.pack=N: one child process per group of packed jobs.

A group of one starts train.py exactly as without packing (medchat.sweeps.launch.Runner). A group of several is
one `python -m medchat.sweeps.pack_process SPEC.json` process (SPEC, written under SWEEP_DIR/.packs/, names each
job's run dir, overrides, action and W&B id/name), started in its own process group on one slot. Each member
job keeps what a solo job has: its attempt in its job.json (the same pid and command for every member: one
process), its status (written by the pack process; after a hard kill, postmortem.finalize writes it per job
and closes its W&B run), and its console.log (the pack's output goes to the first member's console.log; the
others' say where it is).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from medchat.rundir import read_status
from medchat.sweeps import postmortem
from medchat.sweeps.launch import LOG_FILE, Job, Runner, Slot, job_env
from medchat.sweeps.state import begin_attempt, end_attempt

log = logging.getLogger(__name__)
PACKS_DIR = ".packs"


@dataclass
class PackedProcess(Job):
    """A launcher work item standing for several jobs trained in one process (its run_dir: the first member's,
    whose console.log holds the process's output)."""

    members: list[Job] = field(default_factory=list)


def packed_process(members: list[Job]) -> PackedProcess:
    first = members[0]
    return PackedProcess(num=first.num, overrides=first.overrides, identity=first.identity, run_dir=first.run_dir,
                         action="pack", members=list(members))


def spec(config_dir: str, config_name: str, search_dirs: list[str], members: list[Job]) -> dict:
    return {"config_dir": config_dir, "config_name": config_name, "search_dirs": search_dirs,
            "jobs": [{"num": j.num, "run_dir": str(j.run_dir), "overrides": list(j.overrides), "action": j.action,
                      "wandb_run_id": j.wandb_run_id, "wandb_name": j.wandb_name} for j in members]}


def pack_command(spec_path: Path) -> list[str]:
    return [sys.executable, "-m", "medchat.sweeps.pack_process", str(spec_path)]


class PackRunner(Runner):
    """Runner whose work items may be PackedProcess: one child for all its members, each member finalized as a
    job of its own."""

    def __init__(self, *args, sweep_dir: Path, config_dir: str, config_name: str, search_dirs: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.sweep_dir, self.config_dir, self.config_name, self.search_dirs = sweep_dir, config_dir, config_name, search_dirs

    def spec_path(self, job: PackedProcess) -> Path:
        return self.sweep_dir / PACKS_DIR / ("pack-" + "-".join(str(m.num) for m in job.members) + ".json")

    def _start(self, job: Job, slot: Slot):
        if not isinstance(job, PackedProcess):
            return super()._start(job, slot)
        path = self.spec_path(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec(self.config_dir, self.config_name, self.search_dirs, job.members), indent=2))
        job.command = pack_command(path)
        env = job_env(os.environ, slot, len(self.slots), job.members[0], self.sweep_name)
        for key in ("WANDB_RUN_ID", "WANDB_NAME", "WANDB_RESUME", "MEDCHAT_RUN_ID"):
            env.pop(key, None)  # per job: pack_train sets each member's W&B id and name itself
        job.env = env
        job.gpus = ",".join(slot.gpus)
        started = time.time()
        stamp = datetime.now().isoformat(timespec="seconds")
        where = ("GPUs " + job.gpus) if job.gpus else "CPU"
        nums = ", ".join(f"#{m.num}" for m in job.members)
        for m in job.members:
            m.run_dir.mkdir(parents=True, exist_ok=True)
            with open(m.run_dir / LOG_FILE, "a") as f:
                f.write(f"\n===== medchat launcher: {m.action} at {stamp} on {where}, packed with jobs {nums} in one "
                        f"process\n$ {' '.join(job.command)}\n")
                if m is not job.members[0]:
                    f.write(f"(the pack's output: {job.members[0].run_dir / LOG_FILE})\n")
        logf = open(job.run_dir / LOG_FILE, "a")
        proc = subprocess.Popen(job.command, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        for m in job.members:
            m.command, m.env, m.gpus = job.command, env, job.gpus
            begin_attempt(m.run_dir, {"action": m.action, "start": stamp, "gpus": job.gpus, "command": job.command,
                                      "pid": proc.pid, "packed_with": [str(x.run_dir) for x in job.members]}, proc.pid)
        log.info("pack of %d jobs (%s) in one process -> %s", len(job.members), nums,
                 ", ".join(str(m.run_dir) for m in job.members))
        return proc, started

    def _finish(self, job: Job, returncode: int, started: float) -> None:
        if not isinstance(job, PackedProcess):
            return super()._finish(job, returncode, started)
        job.seconds = time.time() - started
        for m in job.members:
            m.seconds = job.seconds
            status = read_status(m.run_dir)
            if status is not None and status["state"] == "done" and (m.run_dir / "metrics.json").exists():
                m.status = status  # finished, whatever the pack's exit code (another member may have failed)
            else:
                m.status = postmortem.finalize(m.run_dir, returncode, started, job.run_dir / LOG_FILE,
                                               m.wandb_run_id, job.env)
            end_attempt(m.run_dir, returncode, m.seconds, m.status["state"])
            log.info("#%d %s after %.0fs (packed)%s", m.num, m.status["state"], m.seconds,
                     f": {m.status.get('reason')}" if m.status["state"] != "done" else "")
        job.status = job.members[0].status


def work_items(jobs: list[Job], groups) -> list[Job]:
    """The launcher's work items in job order: each group of several jobs one PackedProcess, lone jobs as they are."""
    items = []
    for g in groups:
        members = [jobs[i] for i in g.members]
        items.append(packed_process(members) if len(members) > 1 else members[0])
    return items
