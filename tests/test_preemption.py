"""SIGTERM mid-run: a checkpoint, status interrupted, exit code 75; trainer.resume=auto then ends exactly where an
uninterrupted run does. Resumes that would mix configs or data are refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, compose
from medchat.pipeline import train
from medchat.preemption import EXIT_INTERRUPTED
from medchat.resume import ResumeMismatch, read_attempts
from medchat.rundir import RunDirInUse, read_status

# 40 steps of the tiny model with no checkpoint on the way: the one the preemption saves is the only one.
# trainer.max_length=128: a quarter of the debug preset's tokens per step; what is tested (signals, checkpoints,
# resume) does not depend on row length, and the suite must stay under CI's time budget. LoRA dropout at its
# default 0.05: a resume is bit-identical only if the dropout masks after it are the ones the uninterrupted run drew.
COMMON = ["trainer=debug", "trainer.max_length=128", "dataset.n=120", "dataset.eval_size=16", "quant=none",
          "lora.lora_dropout=0.05", "trainer.max_steps=40", "trainer.save_steps=1000", "trainer.eval_strategy=no",
          "trainer.logging_steps=2"]


def _start(run_dir, *extra):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "train.py", *COMMON, *extra, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _training_logged(text: str) -> bool:
    """The console says a training step was logged: medchat.progress's compact line (not a terminal), or the
    trainer's raw dict where something prints one."""
    return "'loss'" in text or re.search(r"^step \d+/\d+ \(\d+%\): loss", text, re.M) is not None


def _wait_for_training(proc) -> list[str]:
    """Read the child's output until the trainer has logged a loss (training is under way)."""
    lines, deadline = [], time.time() + 600
    for line in proc.stdout:
        lines.append(line)
        if _training_logged(line):
            return lines
        if time.time() > deadline:
            break
    proc.kill()
    raise AssertionError("training never logged a loss:\n" + "".join(lines[-50:]))


def _adapter(run):
    return load_file(run / "adapter" / "adapter_model.safetensors")


def test_sigterm_saves_a_checkpoint_and_auto_resume_matches_an_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    train(compose(*COMMON, "tracker=none"), whole)

    proc = _start(broken)
    _wait_for_training(proc)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_INTERRUPTED, rest[-3000:]
    status = read_status(broken)
    assert status["state"] == "interrupted" and status["signal"] == "SIGTERM", status
    step = status["step"]
    assert 0 < step < 40
    checkpoint = broken / "checkpoints" / f"checkpoint-{step}"
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert not (broken / "adapter").exists()
    split_before = (broken / "split.json").read_text()
    eval_before = (broken / "eval.jsonl").read_text()

    # The same config again (trainer.resume=auto is the default) continues from the checkpoint. In this process:
    # what runs is pipeline.train either way, and a second train.py process would add ~10 s of imports.
    train(compose(*COMMON), broken)
    assert read_status(broken)["state"] == "done"
    metrics = json.loads((broken / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith(f"checkpoint-{step}") and metrics["global_step"] == 40
    a, b = _adapter(whole), _adapter(broken)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # a resume never rewrites the held-out rows
    assert (broken / "split.json").read_text() == split_before and (broken / "eval.jsonl").read_text() == eval_before
    # both attempts logged into one W&B run
    attempts = read_attempts(broken)
    run_id = (broken / "wandb_run_id").read_text().strip()  # the one place the id is kept (medchat.tracking)
    assert "wandb_run_id" not in attempts
    wandb_dirs = list(broken.glob("wandb/offline-run-*"))
    assert len(wandb_dirs) == 2 and all(d.name.endswith(f"-{run_id}") for d in wandb_dirs)
    assert [r["checkpoint"].endswith(f"checkpoint-{step}") for r in attempts["resumes"]] == [True]


def test_a_second_signal_exits_at_once(tmp_path):
    proc = _start(tmp_path / "run")
    _wait_for_training(proc)
    proc.send_signal(signal.SIGTERM)
    # the kernel merges a signal into one already pending: send the second once the first was handled
    for line in proc.stdout:
        if "SIGTERM received" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM
    assert read_status(tmp_path / "run")["state"] == "running"  # no grace: nothing written after the signal


CRASH = ["trainer=debug", "trainer.max_length=128", "dataset.n=120", "dataset.eval_size=16", "tracker=none",
         "trainer.max_steps=4", "trainer.save_steps=2", "trainer.eval_strategy=no"]


def _crashed_run(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose(*CRASH, "trainer.fail_at_step=3"), run)
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    return run


def test_resume_with_another_dataset_n_is_refused_naming_the_key(tmp_path):
    run = _crashed_run(tmp_path)
    split = (run / "split.json").read_text()
    with pytest.raises(ResumeMismatch, match=r"dataset\.n: 120 -> 100") as e:
        train(compose(*CRASH, "dataset.n=100"), run)
    assert "data fingerprint" in str(e.value)
    assert (run / "split.json").read_text() == split
    with pytest.raises(ResumeMismatch, match=r"lora\.r: 16 -> 8"):
        train(compose(*CRASH, "lora.r=8"), run)


def test_a_changed_max_steps_needs_resume_true_and_rebuilds_the_schedule(tmp_path):
    """Issue 21 item 8: the cosine schedule was built for 4 steps; resume=auto refuses 6, resume=true continues on a
    schedule of 6 steps (recorded in attempts.json). A cadence key (logging_steps) may change on auto."""
    import math

    run = _crashed_run(tmp_path)
    with pytest.raises(ResumeMismatch, match=r"trainer\.max_steps: 4 -> 6.*trainer\.resume=true"):
        train(compose(*CRASH, "trainer.max_steps=6", "trainer.logging_steps=3"), run)
    assert len(read_attempts(run)["resumes"]) == 0 and read_status(run)["state"] == "failed"
    metrics = train(compose(*CRASH, "trainer.max_steps=6", "trainer.logging_steps=3", "trainer.resume=true"), run)
    assert metrics["global_step"] == 6 and metrics["resumed_from"].endswith("checkpoint-2")
    attempts = read_attempts(run)
    first, [again] = attempts["first"], attempts["resumes"]
    assert again["changed"]["trainer.max_steps"] == [4, 6] and again["changed"]["trainer.logging_steps"] == [2, 3]
    assert again["reshaped"] == {"trainer.max_steps": [4, 6]} and again["deliberate"] is True
    assert first["schedule"]["total_steps"] == 4 and first["shape"]["global_batch"] == 4
    sched = again["schedule"]
    assert sched["total_steps"] == 6 and sched["previous_total_steps"] == 4 and sched["at_step"] == 2

    lr = first["config"]["trainer"]["learning_rate"]

    def cosine(step, total, warmup=1):  # transformers' cosine with warmup; warmup_steps=0.03 -> 1 step
        if step < warmup:
            return lr * step / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    assert sched["learning_rate_at_step"] == pytest.approx(cosine(2, 6), rel=1e-6)
    history = json.loads((run / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    logged = {h["step"]: h["learning_rate"] for h in history if "learning_rate" in h}
    # the first logged step after the resume (the checkpoint's cadence: 4); transformers logs the rate that step
    # trained at, read before its scheduler step: the schedule's value at step - 1
    step = min(k for k in logged if k > 2)
    assert logged[step] == pytest.approx(cosine(step - 1, 6), rel=1e-6)
    assert logged[step] != pytest.approx(cosine(step - 1, 4), rel=1e-3)


def test_retry_of_a_run_that_failed_before_its_first_checkpoint_starts_again(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose(*CRASH, "trainer.fail_at_step=1"), run)
    assert read_status(run)["state"] == "failed" and not (run / "checkpoints" / "checkpoint-2").exists()
    metrics = train(compose(*CRASH), run)  # no extra flag
    assert metrics["resumed_from"] is None and metrics["global_step"] == 4
    with pytest.raises(RunDirInUse, match="status: done"):  # and a done run is never silently overwritten
        train(compose(*CRASH), run)


def test_resume_false_refuses_an_unfinished_run(tmp_path):
    run = _crashed_run(tmp_path)
    with pytest.raises(RunDirInUse, match="status: failed"):
        train(compose(*CRASH, "trainer.resume=false"), run)


def test_corrupt_checkpoint_is_refused_and_a_half_written_one_skipped(tmp_path):
    run = _crashed_run(tmp_path)
    ckpt = run / "checkpoints" / "checkpoint-2"
    half = run / "checkpoints" / "checkpoint-3"  # a save killed midway: no trainer_state.json yet
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    weights = ckpt / "adapter_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:100])
    from medchat.resume import CheckpointError

    with pytest.raises(CheckpointError, match="checkpoint-2 is corrupt: adapter_model.safetensors"):
        train(compose(*CRASH), run)
    weights.write_bytes(good)
    metrics = train(compose(*CRASH), run)
    assert metrics["resumed_from"].endswith("checkpoint-2")


def test_wandb_init_failure_leaves_status_failed(tmp_path, monkeypatch):
    import wandb

    def broken_init(*a, **k):
        raise RuntimeError("wandb.init: no network")

    monkeypatch.setattr(wandb, "init", broken_init)
    with pytest.raises(RuntimeError, match="no network"):
        train(compose(*CRASH[:-1], "tracker=wandb", "trainer.max_steps=1"), tmp_path / "run")
    assert read_status(tmp_path / "run")["state"] == "failed"


def _children(pid: int) -> list[int]:
    try:
        text = open(f"/proc/{pid}/task/{pid}/children").read()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_submitit_job_warned_with_sigusr2_checkpoints_requeues_itself_and_finishes(tmp_path):
    """SLURM's warning signal under submitit is SIGUSR2; submitit's local executor requeues like SLURM does."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "train.py", "-m", "hydra/launcher=submitit_local", *COMMON, "tracker=none",
                             f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline, task = time.time() + 600, None
    while task is None and time.time() < deadline and proc.poll() is None:
        for log in sweep.glob(".submitit/*/*_0_log.*"):  # progress lines go to stderr: *_log.err
            if _training_logged(log.read_text(errors="replace")):
                controller = int(log.parent.name)  # the local executor's job id is its controller's pid
                task = (_children(controller) or [None])[0]
        time.sleep(0.2)
    assert task is not None, proc.communicate()[0][-3000:]
    os.kill(task, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    run = sweep / "0"
    logs = "".join(p.read_text(errors="replace") for p in sweep.glob(".submitit/*/*_log.*"))
    assert "Requeued job" in logs
    assert read_status(run)["state"] == "done"
    attempts = read_attempts(run)
    assert len(attempts["resumes"]) == 1 and "checkpoint-" in attempts["resumes"][0]["checkpoint"]
    metrics = (run / "metrics.json").read_text()
    assert json.loads(metrics)["global_step"] == 40

    # The same sweep again: submitit starts the job, which finds its run done and skips it.
    again = subprocess.run(proc.args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (run / "metrics.json").read_text() == metrics
    logs = "".join(p.read_text(errors="replace") for p in sweep.glob(".submitit/*/*_log.out"))
    assert f"{run}: already done, skipped" in logs
