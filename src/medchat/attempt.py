"""One attempt at a run: claim the run dir, record the attempt, and leave a true status however it ends.

A run dir can see several attempts (a crash, a preemption, a larger max_steps). The first writes what
evaluation and export read (config.yaml, split.json, eval.jsonl, provenance.json) and records its config and
data fingerprint in attempts.json; a resume writes none of those again (the held-out rows stay the first
attempt's) and is checked against the record by medchat.resume. Every file is written whole or not at all
(medchat.atomic: a temporary file renamed over the old one), so a full or read-only disk leaves no half-written JSON.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

from medchat import provenance, resume, rundir
from medchat.atomic import write_json, write_text
from medchat.preemption import Interrupted

log = logging.getLogger(__name__)


class Attempt:
    def __init__(self, run_dir: Path, resume_setting, main: bool):
        """`resume_setting`: trainer.resume (auto | true | false), how medchat.resume.decide treats a checkpoint."""
        self.run_dir, self.resume_setting, self.main = run_dir, resume_setting, main
        self.decision: resume.Decision | None = None

    @property
    def checkpoint(self) -> str | None:
        return self.decision.checkpoint if self.decision else None

    def claim(self, ckpt_dir: Path) -> resume.Decision:
        """Before any data or weights load: may this run dir be trained into, and from which checkpoint."""
        try:
            self.decision = resume.decide(self.run_dir, self.resume_setting, ckpt_dir)
        except rundir.RunDirInUse:
            if self.main:
                resume.restore_hydra_files(self.run_dir)
            raise
        self.check_writable()
        return self.decision

    def check_writable(self) -> None:
        """A read-only or full disk fails here, naming the run dir, not after an hour of training."""
        # One probe file per process: under DDP every rank checks the same dir at the same moment, and a shared
        # name let one rank rename or delete the other's probe (a FileNotFoundError that failed the launch).
        probe = self.run_dir / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe.write_text("ok\n")
            probe.unlink()
        except OSError as e:
            try:
                probe.unlink(missing_ok=True)  # a full disk may have let the name in but not the bytes
            except OSError:
                pass
            raise OSError(e.errno, f"run dir {self.run_dir} is not writable ({e.strerror}): free space or "
                          "choose another hydra.run.dir") from e

    def record(self, cfg_yaml: str, plain_cfg: dict, split, tokenization: dict, plan: dict, *, world_size: int,
               per_device_train_batch_size: int, gradient_accumulation_steps: int) -> None:
        """Write the run dir's record of this attempt (main process only). The W&B run id is medchat.tracking's
        (RUN/wandb_run_id), so a resume continues the W&B run without anything kept here. The attempt's length
        and batch (medchat.resume.run_shape: what the LR schedule is built for) may change on a resume only with
        trainer.resume=true. `plan`: this attempt's run plan (RunPlan.to_dict()), RUN/plan.json for every attempt
        (the tracker logs it; a resume on other hardware re-plans)."""
        run_dir = self.run_dir
        shape = resume.run_shape(plain_cfg, world_size, per_device_train_batch_size, gradient_accumulation_steps)
        if self.checkpoint:
            try:
                resume.check_same_run(run_dir, plain_cfg, split.fingerprint, self.checkpoint, self.main, shape)
            except resume.ResumeMismatch:
                if self.main:
                    resume.restore_hydra_files(run_dir)
                raise
            if self.main:
                rundir.write_status(run_dir, "running", resumed_from=self.checkpoint)
                write_json(run_dir / rundir.PLAN_FILE, plan, ensure_ascii=True)
            return
        if not self.main:
            return
        rundir.write_status(run_dir, "running")
        # what evaluate.py, chat and export read (also when train() is called without Hydra's .hydra/)
        write_text(run_dir / "config.yaml", cfg_yaml)
        write_json(run_dir / "split.json", {**split.manifest(), "tokenization": tokenization})
        write_text(run_dir / "eval.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split.eval))
        write_json(run_dir / "provenance.json", provenance.collect(split.fingerprint, split.source))
        resume.start_first(run_dir, plain_cfg, split.fingerprint, resume.hydra_files(run_dir), shape)
        write_json(run_dir / rundir.PLAN_FILE, plan, ensure_ascii=True)

    def done(self, metrics: dict) -> None:
        """A finished attempt: RUN/metrics.json, then status done (main process only)."""
        if self.main:
            write_json(self.run_dir / "metrics.json", metrics)
            rundir.write_status(self.run_dir, "done")

    def ended(self, error: BaseException, tracker) -> None:
        """Status and tracker for an attempt that raised: interrupted (resumable) or failed."""
        if isinstance(error, Interrupted):
            if self.main:
                rundir.write_status(self.run_dir, "interrupted", signal=error.signal_name, step=error.step,
                                    checkpoint=error.checkpoint, reason=str(error))
            log.warning("%s", error)
            if tracker is not None:
                tracker.finish(preempted_exit_code=error.code)
            return
        if self.main:
            try:
                rundir.write_status(self.run_dir, "failed", reason=f"{type(error).__name__}: {error}"[:2000])
            except OSError:  # the disk that failed the run may refuse the status too: say so, keep the error
                log.error("could not write %s/status", self.run_dir)
        if tracker is not None:
            tracker.finish(failed=True)
