"""Rows longer than trainer.max_length are cut or dropped by medchat, never silently by TRL, and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import compose
from medchat.data.cache import cache_key, fit_rows, tokenize_rows, tokenized
from medchat.formatting import TemplateError, fit_to_length

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


LONG = {"messages": [{"role": "user", "content": "cough " * 5},
                     {"role": "assistant", "content": "rest and fluids " * 40}]}
SHORT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _fit(tokenizer, records, truncation, num_proc=None):
    ds = tokenize_rows(records, tokenizer, "chat_template", num_proc)
    return fit_rows(ds, 48, truncation, tokenizer.eos_token_id, num_proc)


def test_fit_rows_never_returns_a_row_over_max_length(tiny_tokenizer):
    rows, counts = _fit(tiny_tokenizer, [LONG, SHORT], "keep")
    assert all(len(r["input_ids"]) <= 48 for r in rows) and len(rows) == 2
    assert rows.column_names == ["input_ids", "assistant_masks"]
    assert counts["too_long"] == 1 and counts["cut_to_max_length"] == 1 and counts["cut_answer_lost_eos"] == 1
    rows, counts = _fit(tiny_tokenizer, [LONG, SHORT], "drop")
    assert len(rows) == 1 and counts["dropped_too_long"] == 1 and counts["kept"] == 1
    # the parallel path (dataset.num_proc) fits and counts the same rows the same way
    many = [LONG, SHORT] * 4
    one, c1 = _fit(tiny_tokenizer, many, "keep")
    two, c2 = _fit(tiny_tokenizer, many, "keep", num_proc=2)
    assert c1 == c2 and one["input_ids"] == two["input_ids"] and c1["too_long"] == 4


def test_a_cache_hit_counts_what_the_tokenizing_run_counted(tiny_tokenizer, tmp_path):
    from types import SimpleNamespace

    split = SimpleNamespace(train=[LONG, SHORT, SHORT], eval=[SHORT])
    args = (split, tiny_tokenizer, "chat_template", 48, tmp_path / "run")
    train, evals, counts, info = tokenized(*args, truncation="drop")
    assert not info["hit"] and counts["train"]["dropped_too_long"] == 1 and len(train) == 2
    again_train, _, again, info = tokenized(*args, truncation="drop")
    assert info["hit"] and again == counts and again_train["input_ids"] == train["input_ids"]
    # the truncation option is part of the key: keep never reads drop's rows
    _, _, kept, info = tokenized(*args, truncation="keep")
    assert not info["hit"] and kept["train"]["cut_to_max_length"] == 1 and kept["train"]["kept"] == 3
    assert cache_key(split.train, split.eval, tiny_tokenizer, "chat_template", 48, "keep") != \
        cache_key(split.train, split.eval, tiny_tokenizer, "chat_template", 48, "drop")
    # a split left with no row is refused (eval here: its one row is too long), and never cached
    bad = SimpleNamespace(train=[SHORT], eval=[LONG])
    entries = set(Path(info["path"]).parent.iterdir())
    with pytest.raises(TemplateError, match="no eval row fits"):
        tokenized(bad, tiny_tokenizer, "chat_template", 48, tmp_path / "run", truncation="drop")
    assert set(Path(info["path"]).parent.iterdir()) == entries


def test_the_cache_key_changes_with_the_library_versions_that_shape_token_ids(tiny_tokenizer, monkeypatch):
    """A transformers (or jinja2) upgrade may render the template differently: it must not reuse cached ids."""
    from importlib import metadata

    from medchat.data import cache

    args = ([SHORT], [SHORT], tiny_tokenizer, "chat_template", 48, "keep")
    before = cache_key(*args)
    real = metadata.version
    for name in ("transformers", "jinja2", "tokenizers"):
        monkeypatch.setattr(metadata, "version", lambda n, name=name: "0.0.1" if n == name else real(n))
        assert cache_key(*args) != before, name
    monkeypatch.setattr(metadata, "version", real)
    assert cache_key(*args) == before
    assert cache.library_versions()["transformers"] == real("transformers")


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
