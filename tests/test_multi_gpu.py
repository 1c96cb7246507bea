"""Multi-process training on CPU (DDP over gloo), launched the way users launch it on GPUs.

Two processes with 2 rows each must train like one process with 4 rows (the same global batch): one run
dir, one W&B run, written by rank 0, and the same adapter within float32 reduction-order noise.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import ROOT, compose
from medchat.pipeline import train

# lora_dropout=0: each rank draws its own dropout masks, so with dropout the two runs differ by design.
# 160 rows pack into more than 4 steps of 4 rows: the run stays inside the first epoch, whose last, short batch
# DDP would pad with repeated rows.
COMMON = ["trainer=debug", "trainer.max_length=128", "dataset.n=160", "dataset.eval_size=8", "lora.lora_dropout=0", "trainer.max_steps=4",
          "trainer.eval_strategy=no", "trainer.save_steps=4", "trainer.logging_steps=1"]


def _env(**extra) -> dict:
    # Earlier tests in this process may have left run-specific variables (the tracker sets WANDB_DIR, for one).
    dropped = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "MEDCHAT_RUN_ID",
               "TENSORBOARD_LOGGING_DIR")
    env = {k: v for k, v in os.environ.items()
           if k not in dropped and not k.startswith(("WANDB_", "ACCELERATE_", "TORCHELASTIC_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run_dir: Path) -> list[float]:
    state = json.loads((run_dir / "checkpoints/checkpoint-4/trainer_state.json").read_text())
    assert state["epoch"] <= 1.0  # inside the first epoch (see COMMON)
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def _adapter(run_dir: Path) -> dict:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def test_two_processes_train_like_one(tmp_path, tiny_dir):
    runs = tmp_path / "runs_named_so_that_this_override_is_longer_than_a_wandb_tag_may_be"  # W&B caps tags at 64
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "conf/accelerate/ddp.yaml"),
           "--num_processes", "2", "--main_process_port", str(_free_port()), str(ROOT / "train.py"), *COMMON,
           "trainer.per_device_train_batch_size=2", f"runs_root={runs}", "tracker=wandb"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(WANDB_MODE="offline"), capture_output=True, text=True,
                          timeout=240)
    (tmp_path / "launch.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    dirs = [d for d in runs.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs  # both ranks agreed on ${medchat_run_id:}
    ddp = dirs[0]
    assert json.loads((ddp / "status").read_text())["state"] == "done"
    assert len(list((ddp / "wandb").glob("offline-run-*"))) == 1  # one W&B run, from rank 0
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4

    one = tmp_path / "one"
    single = train(compose(*COMMON, "trainer.per_device_train_batch_size=4", "tracker=none"), one)
    assert single["num_input_tokens_seen"] == metrics["num_input_tokens_seen"]  # the same rows were seen
    # The per-step losses (averaged over ranks) and the adapter agree up to float32 summation order.
    losses_one, losses_ddp = _losses(one), _losses(ddp)
    assert len(losses_one) == 4
    for x, y in zip(losses_one, losses_ddp):
        assert abs(x - y) < 1e-4 * abs(x), (losses_one, losses_ddp)
    a, b = _adapter(one), _adapter(ddp)
    assert a.keys() == b.keys()
    update = torch.sqrt(sum((a[k].float() ** 2).sum() for k in a if "lora_B" in k))  # B starts at 0: its update
    diff = torch.sqrt(sum(((a[k].float() - b[k].float()) ** 2).sum() for k in a))
    assert update > 0 and diff / update < 1e-3, (diff, update)


def test_each_launch_gets_its_own_run_id(monkeypatch):
    """accelerate launch sets TORCHELASTIC_RUN_ID=none every time: the key must still differ per launch."""
    from medchat import rundir

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    first = rundir._launch_key()
    monkeypatch.setattr(os, "getppid", lambda: 1)  # another launcher process
    assert rundir._launch_key() != first
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert rundir._launch_key() is None


def test_ranks_building_the_tiny_model_at_once(tmp_path):
    """On a fresh machine every rank asks for the offline model at the same moment (seen failing on 2 GPUs)."""
    code = ("from medchat.tiny import tiny_model_dir; from medchat.config import TinyModelConfig; "
            "from transformers import AutoConfig; print(AutoConfig.from_pretrained(tiny_model_dir(TinyModelConfig()))"
            ".model_type)")
    env = _env(MEDCHAT_CACHE=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert [o[0].split()[-1] for o in outs] == ["llama", "llama"]
    assert len([d for d in (tmp_path / "cache").iterdir() if d.name.startswith("tiny-")]) == 1
