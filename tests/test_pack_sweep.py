"""launcher.pack end to end: a real sweep where two jobs pack into one process and two cannot (group_by_length),
each packed job with its own run dir, adapter, W&B run in the sweep's group, and a report over all four."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

CHEAP = ["trainer=debug", "quant=none", "dataset.n=40", "dataset.eval_size=4", "trainer.max_length=128",
         "trainer.max_steps=4", "trainer.save_steps=2", "trainer.logging_steps=1", "trainer.eval_steps=100",
         "tracker=wandb", "tracker.mode=offline"]


def sweep(sweep_dir, *extra):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "train.py", "-m", *CHEAP, "lora.r=2,4",
           "trainer.train_sampling_strategy=random,group_by_length", "launcher.pack=4",
           f"hydra.sweep.dir={sweep_dir}", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_packable_jobs_share_one_process_the_others_run_alone(tmp_path):
    from medchat.report import build
    from medchat.tracking import wandb_records

    dry = sweep(tmp_path / "dry", "hydra.launcher.dry_run=true")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "pack of 2 in one process: #0, #2 (they differ only in lora.r)" in dry.stdout, dry.stdout
    assert "alone: #1: trainer.train_sampling_strategy=group_by_length" in dry.stdout, dry.stdout

    s = tmp_path / "S"
    out = sweep(s)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "4 jobs: 4 done" in out.stdout, out.stdout[-3000:]
    jobs = {i: json.loads((s / str(i) / "job.json").read_text()) for i in range(4)}
    # one training process for the packed pair (same pid, pack_train's command), train.py for each lone job
    packed = [jobs[0]["attempts"][0], jobs[2]["attempts"][0]]
    assert packed[0]["pid"] == packed[1]["pid"] and packed[0]["command"] == packed[1]["command"]
    assert "medchat.sweeps.pack_process" in packed[0]["command"]
    for i in (1, 3):
        assert any(part.endswith("train.py") for part in jobs[i]["attempts"][0]["command"])
    names = []
    for i in range(4):
        run = s / str(i)
        assert (run / "adapter" / "adapter_model.safetensors").exists() and (run / "adapter" / "tokenizer.json").exists()
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["global_step"] == 4
        assert ("packed" in metrics) == (i in (0, 2))
        record = wandb_records(run, "run", which=0)[0]  # its own offline W&B run, the launcher's id, the sweep's group
        assert record["run_id"] == jobs[i]["wandb_run_id"] and record["run_group"] == "S", record
        names.append(record["display_name"])
    assert len(set(names)) == 4, names
    assert json.loads((s / "0" / "metrics.json").read_text())["packed"]["process_jobs"] == [str(s / "0"), str(s / "2")]
    report = build(s)
    assert (report / "runs.csv").read_text().count(",done,") == 4
