"""Generation metrics during training: logged every eval.every_steps, to W&B or TensorBoard, on rank 0 only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import compose

FAST = ["trainer=debug", "dataset.n=40", "dataset.eval_size=6", "eval.every_steps=2", "eval.num_samples=3", "eval.max_new_tokens=8",
        "eval.metrics=[bleu,rouge,meteor]"]
# The W&B side is checked on the training run that tests/test_evaluate_cli.py makes with `python train.py`
# (test_generation_metrics_and_samples_were_logged_to_wandb_during_training): one run serves both.


def test_generation_metrics_and_samples_go_to_tensorboard(tmp_path, tiny_dir, tiny_tokenizer):
    """Also: sampling (seeded with the step) leaves training's RNG as it found it (issue 21 item 5)."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from medchat import modeling
    from medchat.hardware import Hardware
    from medchat.plan import model_plan
    from medchat.config import ModelConfig, QuantConfig
    from medchat.data import load_split
    from medchat.evaluation.callback import generation_callbacks

    cfg = compose(*FAST, "tracker=tensorboard", "eval.do_sample=true")
    records = load_split(cfg.dataset).eval
    [cb] = generation_callbacks(cfg.eval, tiny_tokenizer, records, tmp_path,
                                prompt_format=cfg.dataset.prompt_format, backend=cfg.tracker.backend)
    model = modeling.load_model(model_plan(ModelConfig(dtype="float32"), QuantConfig(mode="none"), Hardware(),
                                        str(tiny_dir)))
    torch.manual_seed(1234)
    torch.rand(5)  # the training RNG somewhere mid-stream
    cb.log_generations(model, step=4)
    after = torch.rand(8)
    torch.manual_seed(1234)
    torch.rand(5)
    assert torch.equal(after, torch.rand(8))  # the draws training would have made without the callback
    cb.on_train_end(None, None, None)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("gen/bleu")] == [4]
    text = events.Tensors("gen/samples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("| prompt | reference | generation |") and text.count("\n") == 4
    assert records[0]["messages"][-1]["content"][:40] in text


def test_only_rank_zero_generates(monkeypatch):
    from medchat.evaluation import callback

    cb = callback.GenerationCallback.__new__(callback.GenerationCallback)
    cb.cfg = SimpleNamespace(every_steps=2)
    called = []
    monkeypatch.setattr(cb, "log_generations", lambda model, step: called.append(step), raising=False)
    for rank_zero in (False, True):
        for step in (1, 2):
            cb.on_step_end(None, SimpleNamespace(is_world_process_zero=rank_zero, global_step=step), None, model=object())
    assert called == [2]


def test_every_steps_needs_heldout_rows():
    from medchat.config import ConfigError
    from medchat.config_checks import validate

    with pytest.raises(ConfigError, match="eval.every_steps generates for held-out rows"):
        validate(compose(*FAST, "dataset.eval_size=0"))
