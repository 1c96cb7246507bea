"""Real training runs of the tiny model: loss falls, the run dir is complete, resume is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, compose
from medchat.config import ConfigError
from medchat.pipeline import train
from medchat.rundir import RunDirInUse, read_status
from medchat.tracking import wandb_history

FAST = ["trainer=debug", "dataset.n=120", "dataset.eval_size=16"]


def test_loss_falls_and_run_dir_is_complete(tmp_path, capsys):
    run = tmp_path / "run"
    # 256-token rows: half the debug preset's compute; the loss still falls by about 1.1 (7.64 -> 6.53)
    cfg = compose(*FAST, "trainer.max_steps=24", "trainer.logging_steps=4", "trainer.eval_steps=12",
                  "trainer.max_length=256")
    metrics = train(cfg, run)
    # not a terminal: one compact line per log step, with the time left, instead of raw dicts (issue 22 item 2)
    console = capsys.readouterr()
    lines = [ln for ln in console.err.splitlines() if ln.startswith("step ")]
    assert [ln.split(":")[0] for ln in lines] == [f"step {s}/24 ({100 * s / 24:.0f}%)" for s in range(4, 25, 4)]
    assert all("tokens/s" in ln and "left" in ln for ln in lines[:-1]), lines
    assert "training: 22 of 24 steps left, ~" in console.err and "held-out loss at step 12/24: " in console.err
    assert "{'loss'" not in console.out + console.err
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"] - 0.5, metrics
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json",
                 "metrics.json", "provenance.json", "split.json", "eval.jsonl"):
        assert (run / name).exists(), name
    assert read_status(run)["state"] == "done"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["eval_loss_after"] == metrics["eval_loss_after"] and saved["global_step"] == 24
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["packages"]["transformers"] and prov["data"]["fingerprint"] and "dirty" in prov["git"]
    split = json.loads((run / "split.json").read_text())
    assert len(split["eval"]) == metrics["data"]["eval"] == len((run / "eval.jsonl").read_text().splitlines())

    # The offline W&B run holds the loss history the trainer logged.
    history = [row for row in wandb_history(run) if "train/loss" in row]
    assert len(history) == 24 // 4
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert any("eval/before_loss" in row for row in wandb_history(run))


@pytest.mark.parametrize("quant", ["nf4", "none"])
def test_resume_after_a_crash_ends_where_an_uninterrupted_run_does(tmp_path, quant):
    common = [*FAST, f"quant={quant}", "tracker=none", "trainer.max_steps=6", "trainer.save_steps=3", "trainer.eval_strategy=no",
              "lora.lora_dropout=0.0", "trainer.max_length=128"]  # short rows: exactness does not need long ones
    whole = tmp_path / "whole"
    train(compose(*common), whole)

    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated crash at step 4"):
        train(compose(*common, "trainer.fail_at_step=4"), broken)
    status = read_status(broken)
    assert status["state"] == "failed" and "simulated crash" in status["reason"]
    assert (broken / "checkpoints" / "checkpoint-3").is_dir()
    metrics = train(compose(*common, "trainer.resume=true"), broken)
    assert metrics["resumed_from"].endswith("checkpoint-3") and metrics["global_step"] == 6

    a = load_file(whole / "adapter" / "adapter_model.safetensors")
    b = load_file(broken / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    whole_state = json.loads((whole / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    resumed_state = json.loads((broken / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    losses = [[h["loss"] for h in s["log_history"] if "loss" in h] for s in (whole_state, resumed_state)]
    assert losses[0][-1] == losses[1][-1]


def test_a_finished_run_dir_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    cfg = compose(*FAST, "tracker=none", "trainer.max_steps=2", "trainer.eval_strategy=no")
    train(cfg, run)
    before = (run / "metrics.json").read_text()
    with pytest.raises(RunDirInUse, match="trainer.resume=true"):
        train(cfg, run)
    assert (run / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    "override,match",
    [
        ("lora.target_modules=[q_proj,qkv_proj]", "no module named qkv_proj"),
        ("lora.r=0", "lora.r must be > 0"),
        ("trainer.precision=bf16", "trainer.precision=bf16 needs a CUDA GPU"),
        ("dataset.path=/nonexistent/rows.jsonl", "not found"),
        # neither a local directory nor in the HF cache, the Hub off: the way out is named (issue 22)
        ("model.name_or_path=medchat-test/in-no-cache", r"not in the local Hugging Face cache .*HF_HOME=.*"
                                                        r"HF_HUB_OFFLINE is set.*model\.name_or_path=DIR"),
    ],
)
def test_bad_input_fails_before_the_model_loads(tmp_path, override, match, monkeypatch):
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the bad input was caught")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    with pytest.raises(Exception, match=match):
        train(compose(*FAST, override), tmp_path / "run")
    assert not (tmp_path / "run" / "status").exists()


def test_quantization_the_machine_cannot_do(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError, match="quant.mode=nf4 needs bitsandbytes"):
        train(compose(*FAST, "quant=nf4"), tmp_path / "run")


def _cli(*args, cwd=ROOT, env_extra=None):
    env = {**os.environ, "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def test_cfg_job_composes_every_experiment():
    from conftest import CONF

    for exp in sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")):
        out = _cli("--cfg", "job", f"experiment={exp}")
        assert out.returncode == 0, (exp, out.stderr[-2000:])
        assert f"experiment_name: {exp}" in out.stdout
