"""Rows longer than trainer.max_length are cut or dropped by medchat, never silently by TRL, and counted."""

from __future__ import annotations

import json

import pytest

from conftest import compose
from medchat.formatting import TemplateError, fit_to_length, tokenize_rows

EOS = 2


def _row(prompt: int, answer: int):
    ids = [5] * prompt + [7] * (answer - 1) + [EOS]
    return {"input_ids": ids, "assistant_masks": [0] * prompt + [1] * answer}


def test_fit_to_length_counts_every_case():
    row = _row(4, 4)
    assert fit_to_length(row, 8, "drop", EOS) == (row, [])
    assert fit_to_length(row, 6, "drop", EOS) == (None, ["too_long", "dropped_too_long"])
    cut, events = fit_to_length(row, 6, "keep", EOS)
    assert cut["input_ids"] == [5, 5, 5, 5, 7, 7] and cut["assistant_masks"] == [0, 0, 0, 0, 1, 1]
    assert events == ["too_long", "cut_to_max_length", "cut_answer_lost_eos"]
    assert fit_to_length(row, 3, "keep", EOS) == (None, ["too_long", "cut_to_max_length", "dropped_no_trained_token"])


def test_tokenize_rows_never_returns_a_row_over_max_length(tiny_tokenizer):
    long = {"messages": [{"role": "user", "content": "cough " * 5},
                         {"role": "assistant", "content": "rest and fluids " * 40}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows, counts = tokenize_rows(tiny_tokenizer, [long, short], "chat_template", 48, "keep")
    assert all(len(r["input_ids"]) <= 48 for r in rows) and len(rows) == 2
    assert counts["too_long"] == 1 and counts["cut_to_max_length"] == 1 and counts["cut_answer_lost_eos"] == 1
    rows, counts = tokenize_rows(tiny_tokenizer, [long, short], "chat_template", 48, "drop")
    assert len(rows) == 1 and counts["dropped_too_long"] == 1 and counts["kept"] == 1


def test_truncation_counts_reach_split_json_and_metrics(tmp_path, caplog):
    from medchat.pipeline import train

    run = tmp_path / "run"
    with caplog.at_level("WARNING"):
        metrics = train(compose("trainer=debug", "dataset.n=40", "dataset.eval_size=4", "tracker=none",
                                "trainer.max_steps=1", "trainer.eval_strategy=no", "trainer.max_length=280",
                                "trainer.truncation=keep"), run)
    split = json.loads((run / "split.json").read_text())
    counts = split["tokenization"]["train"]
    assert counts["too_long"] > 0 and counts["cut_to_max_length"] == counts["too_long"] == counts["kept"] - \
        (counts["rows"] - counts["too_long"])
    assert counts["cut_answer_lost_eos"] > 0  # the sample answers come last: a cut one always loses its EOS
    assert metrics["tokenization"] == split["tokenization"]
    assert json.loads((run / "metrics.json").read_text())["tokenization"]["train"] == counts
    assert "longer than trainer.max_length=280" in caplog.text


def test_no_row_fitting_is_refused_before_training(tmp_path):
    from medchat.pipeline import train

    with pytest.raises(TemplateError, match="no train row fits trainer.max_length=8"):
        train(compose("trainer=debug", "dataset.n=40", "dataset.eval_size=4", "tracker=none",
                      "trainer.max_length=8"), tmp_path / "run")


def test_tokenizer_without_a_chat_template_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    import transformers

    from medchat import modeling
    from medchat.pipeline import train

    real = modeling.load_tokenizer

    def no_template(*a, **k):
        tok = real(*a, **k)
        tok.chat_template = None
        return tok

    monkeypatch.setattr(modeling, "load_tokenizer", no_template)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the model loaded before the bad tokenizer was caught"))
    with pytest.raises(TemplateError, match="tokenizer has no chat template.*model.chat_template=chatml"):
        train(compose("trainer=debug", "dataset.n=40", "dataset.eval_size=4", "tracker=none",
                      "dataset.prompt_format=chat_template"), tmp_path / "run")
