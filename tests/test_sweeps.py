"""The medchat launcher and the report, on real tiny sweeps: jobs side by side, a hard kill, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import ROOT
from medchat.rundir import read_status

# Tiny jobs: 6 steps, a checkpoint every 2 steps, evaluation at 3 and 6.
CHEAP = ["trainer=debug", "quant=none", "dataset.n=40", "dataset.eval_size=4", "trainer.max_length=128",
         "trainer.max_steps=6", "trainer.save_steps=2", "trainer.logging_steps=1", "trainer.eval_steps=3"]


def sweep_cmd(sweep_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "train.py", "-m", *CHEAP, "lora.r=2,4", "trainer.seed=1,2", "launcher.parallel=2",
            f"hydra.sweep.dir={sweep_dir}", *extra]


def run_sweep(sweep_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(sweep_cmd(sweep_dir), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def kill_when_checkpointed(sweep_dir: Path, job: str, proc: subprocess.Popen) -> None:
    """SIGKILL a job's whole process group as the OOM killer would, right after its first checkpoint."""
    state = sweep_dir / job / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 600
    while not state.exists():
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before the job checkpointed"
        time.sleep(0.05)
    pid = json.loads((sweep_dir / job / "job.json").read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)


def _times(run: Path) -> list[tuple[datetime, datetime]]:
    attempts = json.loads((run / "job.json").read_text())["attempts"]
    return [(datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"])) for a in attempts]


def _wandb_summary(path: Path) -> dict:
    exe = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(exe), "leet", "inspect", "--summary", "--json", str(path)], capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def in_process_wandb_service(tmp_path: Path) -> str:
    import wandb

    run = wandb.init(project="medchat-test", dir=str(tmp_path), mode="offline")
    run.finish()
    return os.environ["WANDB_SERVICE"]


def test_sweep_runs_two_at_a_time_survives_a_kill_resumes_and_reports(tmp_path):
    from medchat.report import build

    sweep = tmp_path / "S"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    # As in the full suite (or a notebook), a wandb-core this process started is advertised in
    # WANDB_SERVICE; the launcher must not let its jobs share it (a killed job's run id would stay taken).
    env["WANDB_SERVICE"] = in_process_wandb_service(tmp_path)
    proc = subprocess.Popen(sweep_cmd(sweep), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    kill_when_checkpointed(sweep, "1", proc)
    out, _ = proc.communicate(timeout=900)

    # One job killed hard, the three others finished; the sweep says so and exits non-zero.
    assert proc.returncode != 0, out[-3000:]
    assert "4 jobs: 3 done, 1 failed" in out, out[-3000:]
    killed = read_status(sweep / "1")
    assert killed["state"] == "failed" and "killed by SIGKILL" in killed["reason"], killed
    assert "finished as failed" in killed["wandb"], killed
    runs = [sweep / str(i) for i in range(4)]
    for run in (runs[0], runs[2], runs[3]):
        assert read_status(run)["state"] == "done"
    # Two at a time: 0 and 1 ran together; 2 and 3 started only once a slot was free.
    (s0, e0), (s1, e1) = _times(runs[0])[0], _times(runs[1])[0]
    assert s0 < e1 and s1 < e0
    for run in runs[2:]:
        assert _times(run)[0][0] >= min(e0, e1)

    # W&B: one offline run per job, grouped by the sweep; the killed job's run was closed as failed.
    wandb_id = json.loads((runs[1] / "job.json").read_text())["wandb_run_id"]
    closing = sorted((runs[1] / "wandb").glob(f"offline-run-*-{wandb_id}*"))[-1]
    assert _wandb_summary(closing)["state"] == "failed"
    first = _wandb_summary(next((runs[0] / "wandb").glob("offline-run-*")))
    assert first["state"] == "finished" and "lora.r=2" in first["tags"] and "trainer.seed=1" in first["tags"]
    group = subprocess.run([str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json",
                            first["file"]], capture_output=True, text=True, timeout=120).stdout
    assert '"run_group":"S"' in group
    # each job named by what differs in the sweep (medchat.sweeps.naming), all of them training runs
    from medchat.tracking import wandb_records

    records = [wandb_records(run, "run", which=0)[0] for run in (runs[0], runs[2], runs[3])]  # 1: killed mid-write
    assert [r["display_name"] for r in records] == ["r2-seed1", "r4-seed1", "r4-seed2"]
    assert {r["run_group"] for r in records} == {"S"} and {r["job_type"] for r in records} == {"train"}
    # one tokenization for the whole sweep, kept under the sweep dir: the jobs that started once a slot was
    # free (2 and 3) read what job 0 or 1 stored
    caches = [json.loads((run / "metrics.json").read_text())["tokenized_cache"] for run in (runs[0], runs[2], runs[3])]
    assert len({c["key"] for c in caches}) == 1 and [c["hit"] for c in caches[1:]] == [True, True], caches
    assert all(c["path"].startswith(str(sweep / ".tokenized")) for c in caches)

    # The report already works on the partly failed sweep.
    partial = build(sweep, tmp_path / "partial")
    rows = (partial / "runs.csv").read_text()
    assert "failed" in rows and "killed by SIGKILL" in rows
    assert "| 2 | 1/2 |" in (partial / "ablation.md").read_text()

    # Re-run: the three finished jobs are skipped, the killed one resumes from its last checkpoint.
    before = {run: (run / "metrics.json").read_text() for run in (runs[0], runs[2], runs[3])}
    again = run_sweep(sweep)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 jobs: 4 done (3 skipped: already done)" in again.stdout, again.stdout[-3000:]
    for run, text in before.items():
        assert (run / "metrics.json").read_text() == text
        assert len(_times(run)) == 1
    resumed = json.loads((runs[1] / "metrics.json").read_text())
    assert resumed["resumed_from"] and "checkpoint-" in resumed["resumed_from"] and resumed["global_step"] == 6
    assert {p.name.split("-")[3] for p in (runs[1] / "wandb").glob("offline-run-*")} == {wandb_id}

    check_report(sweep, build(sweep))


def check_report(sweep: Path, out: Path) -> None:
    import statistics

    import pandas as pd
    from PIL import Image

    frame = pd.read_csv(out / "runs.csv")
    assert len(frame) == 4 and set(frame["status"]) == {"done"}
    for _, row in frame.iterrows():
        run = sweep / str(row["run"])
        metrics = json.loads((run / "metrics.json").read_text())
        state = json.loads(max(run.glob("checkpoints/checkpoint-*/trainer_state.json"),
                               key=lambda p: int(p.parent.name.split("-")[1])).read_text())
        last_train = [h["loss"] for h in state["log_history"] if "loss" in h][-1]
        assert row["eval_loss"] == metrics["eval_loss_after"]
        assert row["train_loss"] == last_train
        assert row["tokens_per_s"] == metrics["train_tokens_per_second"]
        assert row["train_runtime_s"] == metrics["train_runtime_s"]
        assert f"lora.r={row['lora.r']}" in row["overrides"]

    # ablation.md: one row per rank, mean +- std over the two seeds, the lower eval loss in bold.
    table = (out / "ablation.md").read_text()
    stats = {}
    for r in (2, 4):
        losses = [json.loads((sweep / str(run) / "metrics.json").read_text())["eval_loss_after"]
                  for run in frame[frame["lora.r"] == r]["run"]]
        stats[r] = (statistics.mean(losses), statistics.stdev(losses))
    for r, (mean, std) in stats.items():
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {r} | 2/2 |"))
        cell = line.split("|")[3].strip()  # the eval loss column
        shown_mean, shown_std = (float(x) for x in cell.strip("*").split(" ± "))
        places = len(cell.strip("*").split(" ± ")[0].split(".")[1])
        assert abs(shown_mean - mean) <= 0.5 * 10**-places and abs(shown_std - std) <= 0.5 * 10**-places, line
        assert cell.startswith("**") == (mean == min(m for m, _ in stats.values())), line
    tex = (out / "ablation.tex").read_text()
    assert r"\textbf{" in tex and r"$\pm$" in tex and tex.count(r"\\") == 3

    # PNGs: loss curves and each metric against each swept key, all real images.
    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"loss_curves.png", "eval_loss_vs_lora.r.png", "eval_loss_vs_trainer.seed.png"} <= names, names
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.size[0] > 300 and im.size[1] > 200
            assert len(set(im.convert("L").getdata())) > 10  # something was drawn


def test_dry_run_hands_each_job_its_own_gpus_through_accelerate(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "train.py", "-m", "lora.r=8,16,32", "launcher.gpus_per_job=2", "hydra.launcher.gpus=[0,1,2,3]",
         "hydra.launcher.dry_run=true", f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "3 jobs" in out.stdout and "2 at a time on GPUs 0,1 | 2,3" in out.stdout, out.stdout
    assert not list(tmp_path.glob("*/job.json")), "a dry run starts nothing"


def test_slots_commands_and_job_dirs():
    from medchat.sweeps.launch import Job, Slot, command, job_env, make_slots
    from medchat.sweeps.state import identity

    assert [s.gpus for s in make_slots(list("0123"), 2, parallel=1)] == [["0", "1"], ["2", "3"]]
    assert [s.gpus for s in make_slots(list("0123"), 3, parallel=1)] == [["0", "1", "2"]]
    assert [s.gpus for s in make_slots([], 1, parallel=3)] == [[], [], []]
    assert [s.gpus for s in make_slots(list("01"), 0, parallel=2)] == [[], []]  # gpus_per_job=0: CPU jobs
    with pytest.raises(ValueError, match="gpus_per_job=4 but only 2 GPUs"):
        make_slots(list("01"), 4, parallel=1)

    multi = command("train.py", ["lora.r=8"], 2, 29501, [])
    assert multi[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in multi
    assert multi[multi.index("--num_processes") + 1] == "2" and multi[multi.index("--main_process_port") + 1] == "29501"
    assert command("train.py", ["lora.r=8"], 1, 29500, [])[1:] == ["train.py", "lora.r=8"]

    job = Job(num=0, overrides=["lora.r=8"], identity=["lora.r=8"], run_dir=Path("/s/0"), action="fresh",
              wandb_run_id="abc12345")
    env = job_env({"WANDB_RUN_GROUP": "mine"}, Slot(1, ["2", "3"]), 2, job, "S")
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["WANDB_RUN_ID"] == "abc12345"
    assert env["WANDB_RUN_GROUP"] == "mine"  # a group the user set is kept
    cpu = job_env({}, Slot(0, []), 2, job, "S")
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and cpu["WANDB_RUN_GROUP"] == "S" and int(cpu["OMP_NUM_THREADS"]) >= 1

    # launching knobs do not change what a job is
    assert identity(["lora.r=8", "launcher.parallel=2", "trainer.resume=true", "+x=1"]) == ["+x=1", "lora.r=8"]


def test_job_dirs_are_found_by_overrides_not_position(tmp_path):
    from medchat.sweeps.state import place, write_job

    for name, overrides in (("0", ["lora.r=2"]), ("1", ["lora.r=4"])):
        write_job(tmp_path / name, {"overrides": overrides})
    taken: set[str] = set()
    # the sweep grew a value in front: r=4 still finds dir 1, r=1 wants 0 (taken) and gets a new number
    assert place(tmp_path, ["lora.r=4", "launcher.parallel=2"], "1", taken) == tmp_path / "1"
    assert place(tmp_path, ["lora.r=1"], "0", taken) == tmp_path / "2"
    assert place(tmp_path, ["lora.r=8"], "2", taken) == tmp_path / "3"
    assert place(tmp_path, ["lora.r=2"], "7", taken) == tmp_path / "0"


def test_a_killed_job_without_wandb_gets_its_exit_as_the_reason(tmp_path):
    from medchat.rundir import write_status
    from medchat.sweeps.postmortem import finalize

    run = tmp_path / "run"
    run.mkdir()
    started = time.time() - 5
    write_status(run, "running")
    (run / "console.log").write_text("step 3\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n")
    status = finalize(run, -signal.SIGKILL, started, run / "console.log", wandb_run_id="nope1234")
    assert status["state"] == "failed" and "SIGKILL" in status["reason"] and "OutOfMemoryError" in status["reason"]
    assert "wandb" not in status  # no W&B run was ever started

    # a job that failed by itself keeps its own reason
    write_status(run, "failed", reason="RuntimeError: boom")
    status = finalize(run, 1, started, run / "console.log", wandb_run_id=None)
    assert status["reason"] == "RuntimeError: boom" and status["exit"] == "exit code 1"


def test_the_launcher_reads_a_jobs_progress_from_the_lines_training_prints(tmp_path):
    """Each running job's progress, as the launcher logs it, comes from the compact lines medchat.progress writes
    to a job's console.log (not a terminal): the latest step, share, loss and time left."""
    import io
    from types import SimpleNamespace

    from medchat.progress import TrainingProgress
    from medchat.sweeps.launch import last_progress

    log_file = tmp_path / "console.log"
    assert last_progress(log_file) is None  # no log yet
    out = io.StringIO()
    progress = TrainingProgress(stream=out, tty=False)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=40, global_step=0, num_input_tokens_seen=0)
    progress.on_train_begin(None, state, None)
    log_file.write_text("===== medchat launcher: start\n" + out.getvalue())
    assert last_progress(log_file) is None  # started, nothing logged yet
    for step, loss in ((10, 2.5), (20, 2.25)):
        state.global_step, state.num_input_tokens_seen = step, 1000 * step
        progress.on_step_end(None, state, None)
        progress.on_log(None, state, None, logs={"loss": loss, "learning_rate": 1e-4})
    log_file.write_text(log_file.read_text() + out.getvalue() + "{'eval_loss': 2.1}\n")
    now = last_progress(log_file)
    assert now.startswith("step 20/40 (50%), loss 2.25") and now.endswith(" left"), now
