"""trainer.load_best_model_at_end and trainer.early_stopping_patience, on real runs of the tiny model."""

from __future__ import annotations

import json

import pytest

from conftest import compose
from medchat.config import ConfigError
from medchat.config_checks import validate
from medchat.pipeline import train

COMMON = ["trainer=debug", "dataset.n=40", "dataset.eval_size=4", "tracker=none", "trainer.eval_steps=2",
          "trainer.save_steps=2", "trainer.logging_steps=2", "trainer.save_total_limit=null"]


def _eval_losses(run, step):
    state = json.loads((run / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").read_text())
    return {h["step"]: h["eval_loss"] for h in state["log_history"] if "eval_loss" in h}


def test_best_checkpoint_is_loaded_at_the_end_not_the_last_one(tmp_path):
    run = tmp_path / "run"
    # a constant lr of 0.05 makes the tiny model overshoot (measured: eval loss 8.74 9.88 7.54 8.56 10.23
    # at steps 2..10), so the best checkpoint (step 6) is not the last one
    metrics = train(compose(*COMMON, "trainer.max_steps=10", "trainer.learning_rate=0.05",
                            "trainer.lr_scheduler_type=constant", "trainer.warmup_steps=0",
                            "trainer.load_best_model_at_end=true"), run)
    losses = _eval_losses(run, 10)
    best_step = min(losses, key=losses.get)
    assert losses[10] > losses[best_step], f"the run never got worse, so this test cannot tell: {losses}"
    assert metrics["best_step"] == best_step and metrics["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert metrics["best_metric"] == pytest.approx(losses[best_step])
    # the final evaluation (and the saved adapter) is the best checkpoint's model, not the last step's
    assert metrics["eval_loss_after"] == pytest.approx(losses[best_step], rel=1e-5)
    assert metrics["stopped_early"] is False and metrics["global_step"] == 10
    assert json.loads((run / "metrics.json").read_text())["best_step"] == best_step


def test_early_stopping_stops_after_patience_evaluations_without_gain(tmp_path):
    run = tmp_path / "run"
    # a threshold no step can beat: the evaluation at step 2 sets the mark, the one at step 4 is one miss
    metrics = train(compose(*COMMON, "trainer.max_steps=20", "trainer.early_stopping_patience=1",
                            "trainer.early_stopping_threshold=100"), run)
    assert metrics["global_step"] == 4 and metrics["stopped_early"] is True and metrics["planned_steps"] == 20
    assert metrics["best_step"] in (2, 4) and metrics["loaded_best_model"] is True


@pytest.mark.parametrize("override, match", [
    (["trainer.load_best_model_at_end=true", "trainer.save_steps=3"], "save_steps .3. to be a multiple"),
    (["trainer.early_stopping_patience=2", "trainer.eval_strategy=no"], "early_stopping_patience needs trainer.eval_strategy=steps"),
    (["trainer.early_stopping_patience=0"], "early_stopping_patience must be > 0"),
    (["trainer.load_best_model_at_end=true", "trainer.metric_for_best_model=loss"], "must be an eval_"),
])
def test_best_and_early_config_errors_name_the_key(override, match):
    cfg = compose("trainer=debug", "trainer.eval_steps=2", "trainer.save_steps=4", *override)
    with pytest.raises(ConfigError, match=match):
        validate(cfg)
