"""Whether a run dir may be trained into, from which checkpoint, and whether the resume matches the run.

`trainer.resume` (see medchat.config.TrainerConfig):

    no status in the run dir          -> fresh start (any setting)
    status done                       -> refused (auto | false); true continues it (e.g. a larger max_steps)
    status running|failed|interrupted -> auto | true: continue from the latest complete checkpoint, or start
                                         again when there is none; false: refused

A continued run must be the same run: the first attempt's composed config and data fingerprint are kept in
RUN/attempts.json, and a resume that differs in anything that shapes training (model, data, split, LoRA,
quantization, optimizer, schedule, ...) is refused with the keys listed. Only the keys in MAY_CHANGE may
differ; each resume and what it changed is appended to the same file. The W&B run id is not kept here but in
RUN/wandb_run_id (medchat.tracking.saved_run_id, also read by evaluate.py), so every attempt logs into one W&B run.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from medchat.config import ConfigError
from medchat.rundir import RunDirInUse, read_status

log = logging.getLogger(__name__)
ATTEMPTS_FILE = "attempts.json"
# Keys a resume may change: how long, how often to log/evaluate/save, where to report. Everything else
# shapes what is trained (or which rows are held out) and must match the first attempt.
MAY_CHANGE = (
    "trainer.max_steps", "trainer.num_train_epochs", "trainer.logging_steps", "trainer.eval_steps",
    "trainer.eval_strategy", "trainer.save_steps", "trainer.save_total_limit", "trainer.per_device_eval_batch_size",
    "trainer.resume", "trainer.fail_at_step", "trainer.dataloader_num_workers", "tracker.", "eval.", "launcher.",
    "runs_root", "experiment_name", "extra.",
)


class ResumeMismatch(ConfigError):
    """A resume whose config or data differ from the run's first attempt in what shapes training."""


class CheckpointError(RuntimeError):
    pass


@dataclass
class Decision:
    previous: dict | None  # the run dir's status before this attempt (None: a new run)
    checkpoint: str | None  # continue from here; None: start from step 0


def _may_change(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in MAY_CHANGE)


def flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(first: dict, now: dict) -> dict[str, tuple]:
    a, b = flatten(first), flatten(now)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def checkpoint_is_complete(path: Path) -> bool:
    """Transformers writes trainer_state.json last: without it the save was cut short (a kill mid-save)."""
    return (path / "trainer_state.json").is_file()


def check_checkpoint(path: Path) -> None:
    """A complete-looking checkpoint whose files cannot be read is refused, naming the file."""
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {state.name} does not parse ({e}); delete {path} "
                              "to resume from the one before it") from e
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"checkpoint {path} is corrupt: no *.safetensors weights; delete {path} to resume "
                              "from the one before it")
    for w in weights:
        try:
            from safetensors import safe_open

            with safe_open(str(w), framework="pt") as f:
                list(f.keys())
        except Exception as e:  # safetensors raises its own error types for a broken header
            raise CheckpointError(f"checkpoint {path} is corrupt: {w.name} cannot be read ({e}); delete {path} "
                                  "to resume from the one before it") from e


def latest_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest complete checkpoint; half-written newer ones are skipped with a warning."""
    if not ckpt_dir.is_dir():
        return None
    found = sorted((p for p in ckpt_dir.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()),
                   key=lambda p: int(p.name.split("-")[1]), reverse=True)
    for path in found:
        if checkpoint_is_complete(path):
            check_checkpoint(path)
            return str(path)
        log.warning("skipping %s: incomplete (no trainer_state.json; the save was interrupted)", path)
    return None


def decide(run_dir: Path, resume, ckpt_dir: Path) -> Decision:
    mode = str(resume).lower()
    status = read_status(run_dir)
    if status is None:
        return Decision(None, None)
    state = status["state"]
    if mode == "false" or (state == "done" and mode == "auto"):
        hint = ("Pass trainer.resume=true to train it further" if state == "done"
                else "Leave trainer.resume at auto (the default) to continue it")
        raise RunDirInUse(f"run dir {run_dir} already holds a run (status: {state}); medchat never overwrites "
                          f"one. {hint}, or choose another hydra.run.dir.")
    checkpoint = latest_checkpoint(ckpt_dir)
    if checkpoint is None:
        log.info("run dir %s (status %s) has no checkpoint: starting again from step 0", run_dir, state)
    else:
        log.info("resuming %s (status %s) from %s", run_dir, state, checkpoint)
    return Decision(status, checkpoint)


def read_attempts(run_dir: Path) -> dict | None:
    path = Path(run_dir) / ATTEMPTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _write(run_dir: Path, record: dict) -> None:
    path = Path(run_dir) / ATTEMPTS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def start_first(run_dir: Path, config: dict, fingerprint: str, hydra_files: dict) -> dict:
    """Record the first attempt (also when a run is started again from step 0: nothing of the old one is kept)."""
    record = {"first": {"time": _now(), "config": config, "data_fingerprint": fingerprint, "hydra": hydra_files},
              "resumes": []}
    _write(run_dir, record)
    return record


def check_same_run(run_dir: Path, config: dict, fingerprint: str, checkpoint: str, write: bool = True) -> dict:
    """Refuse a resume that would mix configs or data; record an allowed one (`write`: the main process).
    Every rank checks, so that none trains on alone after the main one refused. Returns the attempts record."""
    record = read_attempts(run_dir)
    if record is None:
        raise ResumeMismatch(f"{run_dir} has a checkpoint but no {ATTEMPTS_FILE}: it was not written by this "
                             "medchat version, so a resume cannot be checked against its first attempt; "
                             "train into a new run dir")
    diff = differences(record["first"]["config"], config)
    refused = {k: v for k, v in diff.items() if not _may_change(k)}
    if record["first"]["data_fingerprint"] != fingerprint:
        refused["data fingerprint (the rows in train/eval)"] = (record["first"]["data_fingerprint"], fingerprint)
    if refused:
        lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ResumeMismatch(
            f"refusing to resume {run_dir}: this attempt differs from the run's first in what shapes training: "
            f"{lines}. Put it back as it was, or train into a new run dir (allowed to change: "
            f"{', '.join(MAY_CHANGE)})")
    record["resumes"].append({"time": _now(), "checkpoint": checkpoint,
                              "changed": {k: list(v) for k, v in diff.items()}})
    if write:
        _write(run_dir, record)
    return record


def restore_hydra_files(run_dir: Path) -> None:
    """Hydra rewrites RUN/.hydra/*.yaml before train() runs: put the first attempt's back after a refused resume."""
    record = read_attempts(run_dir) or {}
    for name, text in (record.get("first", {}).get("hydra") or {}).items():
        (Path(run_dir) / ".hydra" / name).write_text(text)


def hydra_files(run_dir: Path) -> dict:
    folder = Path(run_dir) / ".hydra"
    return {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")
