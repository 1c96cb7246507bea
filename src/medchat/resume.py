"""Whether a run dir may be trained into, from which checkpoint, and whether the resume matches the run.

`trainer.resume` (see medchat.config.TrainerConfig):

    no status in the run dir          -> fresh start (any setting)
    status done                       -> refused (auto | false); true continues it (e.g. a larger max_steps)
    status running|failed|interrupted -> auto | true: continue from the latest complete checkpoint, or start
                                         again when there is none; false: refused

A continued run must be the same run: the first attempt's composed config and data fingerprint are kept in
RUN/attempts.json, and a resume that differs in anything that shapes training (model, data, split, LoRA,
quantization, optimizer, schedule, ...) is refused with the keys listed. Only the keys in MAY_CHANGE may
differ; each resume and what it changed is appended to the same file.

The run's length and optimizer-step batch (`shape`: trainer.max_steps, trainer.num_train_epochs, the world
size and the global batch = per-device x accumulation x world size, compared with the latest attempt's) are
what the learning-rate schedule was built for: a change is refused on trainer.resume=auto and continued only
with trainer.resume=true, a deliberate choice. The schedule is then rebuilt for the new length
(medchat.training.ScheduleCallback: its total and warmup steps, and the learning rate from the resumed step on)
and recorded in the attempt's entry of attempts.json (`schedule`). The W&B run id is not kept here but in
RUN/wandb_run_id (medchat.tracking.saved_run_id, also read by evaluate.py), so every attempt logs into one W&B run.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from medchat.atomic import write_json, write_text
from medchat.config import ConfigError, flatten
from medchat.rundir import RunDirInUse, read_status

log = logging.getLogger(__name__)
ATTEMPTS_FILE = "attempts.json"
# Keys a resume may change: how long, how often to log/evaluate/save, where to report. Everything else
# shapes what is trained (or which rows are held out) and must match the first attempt.
MAY_CHANGE = (
    "trainer.logging_steps", "trainer.eval_steps",
    "trainer.eval_strategy", "trainer.save_steps", "trainer.save_total_limit", "trainer.per_device_eval_batch_size",
    "trainer.resume", "trainer.fail_at_step", "trainer.dataloader_num_workers", "tracker.", "eval.", "launcher.",
    "runs_root", "experiment_name", "extra.",
)

# What the learning-rate schedule's length and the optimizer step's batch depend on: compared with the latest
# attempt (`shape` in attempts.json); a change needs trainer.resume=true. The config keys among them are left out
# of the comparison with the first attempt's config.
SHAPE_KEYS = ("trainer.max_steps", "trainer.num_train_epochs", "world_size", "global_batch")
SHAPE_CONFIG_KEYS = ("trainer.max_steps", "trainer.num_train_epochs", "trainer.per_device_train_batch_size",
                     "trainer.gradient_accumulation_steps")


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
    write_json(Path(run_dir) / ATTEMPTS_FILE, record, default=str)


def run_shape(config: dict, world_size: int, per_device: int, accumulation: int) -> dict:
    """The attempt's length and batch (what the LR schedule is built for): SHAPE_KEYS plus the batch's split.
    per_device / accumulation: what the trainer runs with (the plan's, which an auto micro-batch may split
    differently from the config at the same global batch)."""
    t = config["trainer"]
    return {"trainer.max_steps": t["max_steps"], "trainer.num_train_epochs": t["num_train_epochs"],
            "world_size": world_size, "per_device_train_batch_size": per_device,
            "gradient_accumulation_steps": accumulation, "global_batch": per_device * accumulation * world_size}


def latest_shape(record: dict) -> dict:
    """The shape the latest attempt ran with (an attempts.json from before shapes were recorded: the first
    attempt's max_steps and epochs, from its config; its world size and global batch are unknown)."""
    for entry in reversed(record["resumes"]):
        if entry.get("shape"):
            return entry["shape"]
    if record["first"].get("shape"):
        return record["first"]["shape"]
    t = record["first"]["config"].get("trainer", {})
    return {k: t[k.split(".", 1)[1]] for k in SHAPE_KEYS[:2] if k.split(".", 1)[1] in t}


def start_first(run_dir: Path, config: dict, fingerprint: str, hydra_files: dict, shape: dict | None = None) -> dict:
    """Record the first attempt (also when a run is started again from step 0: nothing of the old one is kept)."""
    record = {"first": {"time": _now(), "config": config, "data_fingerprint": fingerprint, "hydra": hydra_files,
                        "shape": shape},
              "resumes": []}
    _write(run_dir, record)
    return record


def check_same_run(run_dir: Path, config: dict, fingerprint: str, checkpoint: str, write: bool = True,
                   shape: dict | None = None) -> dict:
    """Refuse a resume that would mix configs or data; record an allowed one (`write`: the main process).
    A change of the run's shape (length, world size, global batch) passes only with trainer.resume=true.
    Every rank checks, so that none trains on alone after the main one refused. Returns the attempts record."""
    record = read_attempts(run_dir)
    if record is None:
        raise ResumeMismatch(f"{run_dir} has a checkpoint but no {ATTEMPTS_FILE}: it was not written by this "
                             "medchat version, so a resume cannot be checked against its first attempt; "
                             "train into a new run dir")
    diff = differences(record["first"]["config"], config)
    refused = {k: v for k, v in diff.items() if not _may_change(k) and k not in SHAPE_CONFIG_KEYS}
    if record["first"]["data_fingerprint"] != fingerprint:
        refused["data fingerprint (the rows in train/eval)"] = (record["first"]["data_fingerprint"], fingerprint)
    if refused:
        lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ResumeMismatch(
            f"refusing to resume {run_dir}: this attempt differs from the run's first in what shapes training: "
            f"{lines}. Put it back as it was, or train into a new run dir (allowed to change: "
            f"{', '.join(MAY_CHANGE)}; with trainer.resume=true also {', '.join(SHAPE_KEYS)})")
    before = latest_shape(record)
    t = config.get("trainer", {})
    now = shape if shape is not None else {k: t.get(k.split(".", 1)[1]) for k in SHAPE_KEYS[:2]}
    reshaped = {k: (before[k], now[k]) for k in SHAPE_KEYS if k in before and k in now and before[k] != now[k]}
    # the batch split in the config (per-device, accumulation) is part of the deliberate change too
    reshaped.update({k: diff[k] for k in SHAPE_CONFIG_KEYS[2:] if k in diff})
    deliberate = str(config.get("trainer", {}).get("resume", "auto")).lower() == "true"
    if reshaped and not deliberate:
        lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in reshaped.items())
        raise ResumeMismatch(
            f"refusing to resume {run_dir} on trainer.resume=auto: {lines} changes the length or the optimizer-step "
            "batch the learning-rate schedule was built for (its warmup and decay would jump). Put it back as it "
            "was, or pass trainer.resume=true to continue deliberately: the schedule is then rebuilt for the new "
            f"length and the change recorded in {ATTEMPTS_FILE}")
    record["resumes"].append({"time": _now(), "checkpoint": checkpoint,
                              "changed": {k: list(v) for k, v in diff.items()},
                              "shape": shape, "reshaped": {k: list(v) for k, v in reshaped.items()},
                              "deliberate": bool(reshaped) and deliberate})
    if write:
        _write(run_dir, record)
    return record


def previous_schedule(run_dir: Path) -> dict | None:
    """The learning-rate schedule the latest attempt before this one recorded (None: none recorded)."""
    record = read_attempts(run_dir)
    if record is None:
        return None
    entries = [record["first"], *record["resumes"]]
    return next((e["schedule"] for e in reversed(entries[:-1]) if e.get("schedule")), None)


def record_schedule(run_dir: Path, schedule: dict) -> None:
    """This attempt's learning-rate schedule into its entry of attempts.json (the last resume, or the first)."""
    record = read_attempts(run_dir)
    if record is None:
        return
    (record["resumes"][-1] if record["resumes"] else record["first"])["schedule"] = schedule
    _write(run_dir, record)


def restore_hydra_files(run_dir: Path) -> None:
    """Hydra rewrites RUN/.hydra/*.yaml before train() runs: put the first attempt's back after a refused resume."""
    record = read_attempts(run_dir) or {}
    for name, text in (record.get("first", {}).get("hydra") or {}).items():
        write_text(Path(run_dir) / ".hydra" / name, text)


def hydra_files(run_dir: Path) -> dict:
    folder = Path(run_dir) / ".hydra"
    return {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")
