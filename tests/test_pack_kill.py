"""A packed sweep killed hard through the launcher (issue 24: "a packed sweep killed mid-run resumes"): SIGKILL to the
pack process's group after its first checkpoint leaves every member failed with the launcher's post-mortem reason;
the same sweep command again resumes each member from its last checkpoint to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT

# the tiny model, two jobs that pack (they differ only in lora.r), a checkpoint every 2 steps and enough steps that
# the kill lands mid-run; tracker=none: no W&B run to close keeps the post-mortem quick
STEPS = 60
COMMAND = ["train.py", "-m", "trainer=debug", "quant=none", "dataset.n=40", "dataset.eval_size=4",
           "trainer.max_length=128", f"trainer.max_steps={STEPS}", "trainer.save_steps=2", "trainer.logging_steps=10",
           "trainer.eval_steps=1000", "tracker=none", "lora.r=2,4", "launcher.pack=2"]


def start(sweep_dir, log):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, *COMMAND, f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_a_killed_pack_leaves_each_job_failed_and_the_sweep_again_resumes_each(tmp_path):
    s = tmp_path / "S"
    runs = [s / "0", s / "1"]
    log_path = tmp_path / "launcher.log"
    with open(log_path, "w") as log:
        launcher = start(s, log)
        try:
            # the pack process (its own process group: medchat.sweeps.pack_launch) once every job has a whole
            # checkpoint (the members save one after another in a step: wait for the last)
            deadline, pid = time.monotonic() + 120, None
            while time.monotonic() < deadline and launcher.poll() is None:
                job = runs[0] / "job.json"
                pid = json.loads(job.read_text()).get("pid") if job.exists() else None
                if pid and all(list(r.glob("checkpoints/checkpoint-*/trainer_state.json")) for r in runs):
                    break
                time.sleep(0.02)
            assert pid and launcher.poll() is None, log_path.read_text()[-3000:]
            os.killpg(pid, signal.SIGKILL)
            launcher.wait(timeout=120)  # the launcher outlives its child and writes each member's post-mortem
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
    first = log_path.read_text()
    for run in runs:
        status = json.loads((run / "status").read_text()) if (run / "status").is_file() else None
        assert status is not None, list(run.iterdir())
        assert status["state"] in ("failed", "interrupted") and "SIGKILL" in status["reason"], status
        assert not (run / "metrics.json").exists()
    killed_at = {run: max(int(p.parent.name.split("-")[1]) for p in run.glob("checkpoints/checkpoint-*/trainer_state.json"))
                 for run in runs}
    assert all(2 <= step < STEPS for step in killed_at.values()), (killed_at, first[-2000:])
    print("killed after checkpoints", {r.name: n for r, n in killed_at.items()}, "-", status["reason"])

    with open(log_path, "a") as log:
        again = start(s, log)
        try:
            assert again.wait(timeout=240) == 0, log_path.read_text()[-3000:]
        finally:
            if again.poll() is None:
                os.killpg(again.pid, signal.SIGKILL)
    out = log_path.read_text()[len(first):]
    assert "2 jobs: 2 done" in out, out[-3000:]
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["global_step"] == STEPS and metrics["packed"]["jobs"] == 2
        assert metrics["resumed_from"] == str(run / "checkpoints" / f"checkpoint-{killed_at[run]}"), metrics["resumed_from"]
        assert json.loads((run / "status").read_text())["state"] == "done"
        assert (run / "adapter" / "adapter_model.safetensors").exists()
        attempts = json.loads((run / "job.json").read_text())["attempts"]
        assert len(attempts) == 2 and attempts[0]["state"] != "done" and attempts[1]["state"] == "done", attempts
        print(run.name, [(a["action"], a["state"]) for a in attempts], metrics["resumed_from"])
