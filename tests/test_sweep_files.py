"""Every file in sweep/ composes and runs: the ablations (every job composed and checked), the Bayesian
search (a real 2-trial study, then continued), SLURM through submitit (its local executor runs, requeues and
skips a job in tests/test_preemption.py), W&B's sweep file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, compose
from medchat.config_checks import validate
from medchat.rundir import read_status

SWEEP = ROOT / "sweep"
# A trial as cheap as a training run gets: 2 steps, no checkpoint, eval loss before and after, no tracker
# (tests/test_sweeps.py covers W&B under the launcher).
TINY = ["trainer=debug", "quant=none", "tracker=none", "dataset.n=24", "dataset.eval_size=4", "trainer.max_length=128",
        "trainer.max_steps=2", "trainer.eval_strategy=no", "trainer.save_steps=100"]


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_every_sweep_file_is_tested_here_and_says_what_it_is_for():
    files = sorted(str(p.relative_to(SWEEP)) for p in SWEEP.rglob("*.yaml"))
    assert files == ["bayes.yaml", "beta.yaml", "hydra/launcher/slurm.yaml", "lr.yaml", "rank_alpha.yaml",
                     "seeds.yaml", "smollm2_lora.yaml", "targets.yaml", "wandb_sweep.yaml"]
    for name in ("bayes", "beta", "lr", "rank_alpha", "seeds", "smollm2_lora", "targets"):
        text = (SWEEP / f"{name}.yaml").read_text()
        assert text.startswith("# Question:") and f"--config-name {name}" in text, name


@pytest.mark.parametrize("name,jobs,extra", [
    ("seeds", 3, []), ("rank_alpha", 27, []), ("targets", 9, []), ("lr", 12, []), ("smollm2_lora", 8, []),
    # DPO needs an SFT run and pairs; the dry run composes and validates every job without reading them
    ("beta", 12, ["stage.init_from=runs/SFT", "dataset.path=pairs.jsonl"]),
])
def test_ablation_composes_and_checks_every_job(name, jobs, extra, tmp_path):
    out = cli("-m", "--config-dir", "sweep", "--config-name", name, "hydra.launcher.dry_run=true",
              f"hydra.sweep.dir={tmp_path}", *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"dry run: {jobs} jobs into {tmp_path}" in out.stdout, out.stdout[-3000:]
    # every job's own process would compose the same primary config
    assert out.stdout.count(f"--config-name={name} ") == jobs and f"--config-dir={SWEEP}" in out.stdout
    assert out.stdout.count("trainer.seed=") == jobs


def test_bayes_search_runs_trials_and_continues_its_study(tmp_path):
    import optuna

    args = ["-m", "--config-dir", "sweep", "--config-name", "bayes", *TINY, "launcher.parallel=2",
            f"hydra.sweep.dir={tmp_path}"]
    first = cli(*args, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    runs = sorted(p.parent for p in tmp_path.glob("*/job.json"))
    assert len(runs) == 2 and all(read_status(r)["state"] == "done" for r in runs)
    losses = {r: json.loads((r / "metrics.json").read_text())["eval_loss_after"] for r in runs}
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(losses.values())
    # the trial's parameters are what its job ran with
    best_run = min(losses, key=losses.get)
    ran = json.loads((best_run / "job.json").read_text())["overrides"]
    assert f"lora.r={best['best_params']['lora.r']}" in ran

    # The same command with a larger budget continues the study: one more trial, not three.
    second = cli(*args, "hydra.sweeper.n_trials=3")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 of 3 trials complete" in second.stdout + second.stderr
    study = optuna.load_study(study_name="medchat", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert len(list(tmp_path.glob("*/job.json"))) == 3


def test_slurm_launcher_config_composes():
    out = cli("--config-dir", "sweep", "hydra/launcher=slurm", "launcher.gpus_per_job=2", "--cfg", "all", "--resolve")
    assert out.returncode == 0, out.stderr[-3000:]
    launcher = yaml.safe_load(out.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["gpus_per_node"] == 2 and launcher["max_num_timeout"] == 3


def test_wandb_sweep_file_gives_train_py_valid_overrides():
    spec = yaml.safe_load((SWEEP / "wandb_sweep.yaml").read_text())
    assert spec["program"] == "train.py" and (ROOT / spec["program"]).exists()
    assert spec["command"][-1] == "${args_no_hyphens}"
    assert spec["metric"]["name"] == "eval_loss_after"  # logged to the W&B summary from metrics.json
    params = spec["parameters"]
    corners = {k: (p["values"] if "values" in p else [p["min"], p["max"]]) for k, p in params.items()}
    for key, values in corners.items():
        for value in values:  # each value of each parameter, the others at their first value
            chosen = {k: (value if k == key else v[0]) for k, v in corners.items()}
            cfg = compose(*(f"{k}={v}" for k, v in chosen.items()))
            validate(cfg)
            assert str(cfg.lora.targets) == str(chosen["lora.targets"])

