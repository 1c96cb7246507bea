"""No host read inside a training step (issue 23): TRL's per-micro-batch metrics and transformers' token count
stay on the device until a logging or saving step, and come out equal to what TRL and transformers log."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import sys

import pytest
import torch

from conftest import compose
from medchat import sft_trainer
from medchat.pipeline import train
from medchat.rundir import read_status

# 6 steps, logs every 2, checkpoints at 3 and 6: a save that is not a logging step reads the pending counts too
COMMON = ["trainer=debug", "dataset.n=120", "dataset.eval_size=16", "quant=none", "tracker=none",
          "trainer.max_steps=6", "trainer.logging_steps=2", "trainer.save_steps=3", "trainer.eval_strategy=no",
          "lora.lora_dropout=0.0", "trainer.max_length=128", "trainer.gradient_accumulation_steps=2"]
READS = ("item", "tolist", "__bool__", "__int__", "__float__")


def plain_trl_class():
    """The reference: TRL's SFTTrainer with its own compute_loss and transformers' own token count."""
    from trl import SFTTrainer

    return type("PlainSFTTrainer", (sft_trainer.TokenWeightedEvalLoss, sft_trainer.CountPositions, SFTTrainer), {})


@contextlib.contextmanager
def counting_reads_in_steps(monkeypatch):
    """Count tensor-to-host reads made while a micro-batch trains (training_step) or is counted
    (_track_num_input_tokens), the two places a step runs through per micro-batch, by the file that reads."""
    from transformers import Trainer

    counts = {"reads": collections.Counter(), "inside": False}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def read(self, *args, _original=original, **kwargs):
            if counts["inside"]:
                counts["reads"][sys._getframe(1).f_code.co_filename.split("site-packages/")[-1]] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, read)
    for name in ("training_step", "_track_num_input_tokens"):
        original = getattr(Trainer, name)

        def inside(self, *args, _original=original, **kwargs):
            counts["inside"] = True
            try:
                return _original(self, *args, **kwargs)
            finally:
                counts["inside"] = False

        monkeypatch.setattr(Trainer, name, inside)
    yield counts


def state(run, step):
    return json.loads((run / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run with medchat's trainer and with plain TRL's, and the host reads each made inside steps."""
    out = {}
    for name in ("medchat", "trl"):
        with pytest.MonkeyPatch.context() as mp, counting_reads_in_steps(mp) as counts:
            if name == "trl":
                mp.setattr(sft_trainer, "sft_trainer_class", plain_trl_class)
            run = tmp_path_factory.mktemp(name)
            metrics = train(compose(*COMMON), run)
        out[name] = (run, metrics, counts["reads"])
    return out


def test_logged_metrics_equal_trls(runs):
    (run, metrics, _), (ref_run, ref_metrics, _) = runs["medchat"], runs["trl"]
    keys = ("loss", "entropy", "mean_token_accuracy", "num_tokens", "num_input_tokens_seen", "grad_norm")
    logs = [{k: row[k] for k in keys if k in row} for row in state(run, 6)["log_history"] if "loss" in row]
    ref = [{k: row[k] for k in keys if k in row} for row in state(ref_run, 6)["log_history"] if "loss" in row]
    assert len(logs) == 3 and all(set(row) == set(keys) for row in ref), ref
    for got, want in zip(logs, ref):
        for k in keys:
            assert math.isclose(got[k], want[k], rel_tol=1e-6, abs_tol=1e-9), (k, got, want)
    # the checkpoint at step 3 (not a logging step) holds the tokens seen through step 3
    assert state(run, 3)["num_input_tokens_seen"] == state(ref_run, 3)["num_input_tokens_seen"] > 0
    assert metrics["num_input_tokens_seen"] == ref_metrics["num_input_tokens_seen"]
    assert metrics["eval_loss_after"] == pytest.approx(ref_metrics["eval_loss_after"], abs=1e-6)


def owned(reads: collections.Counter) -> int:
    """Reads by the trainer code (TRL's, transformers' Trainer, medchat's); left out: the model's own forward
    (transformers' packed-sequence check in its mask building reads once per forward, masking_utils.py)."""
    return sum(n for file, n in reads.items() if file.startswith("trl/") or file.endswith("transformers/trainer.py")
               or "/medchat/" in file)


def test_no_host_read_inside_a_step(runs):
    # TRL's compute_loss reads its metrics back per micro-batch (5 reads) and transformers its token count:
    # the reference shows the counter sees them (12 micro-batches); medchat's steps read nothing
    assert owned(runs["trl"][2]) >= 12 * 5, runs["trl"][2]
    assert owned(runs["medchat"][2]) == 0, runs["medchat"][2]


def test_a_non_finite_loss_stops_the_run(tmp_path):
    """transformers' NaN filter (a host read per micro-batch) is off; the NaN reaches the log and stops the run
    instead of being left out of the logged mean while the weights turn NaN."""
    cfg = compose(*COMMON, "trainer.learning_rate=1e30", "trainer.max_grad_norm=0")
    with pytest.raises(FloatingPointError, match=r"training loss is (nan|inf) at step 4"):  # logged at 2, 4, 6
        train(cfg, tmp_path / "run")
    assert read_status(tmp_path / "run")["state"] == "failed"
    assert not (tmp_path / "run" / "adapter").exists()
