"""medchat.inspect: the trained tokens it marks are exactly the doctor's turns (+ EOS), before any weights load."""

from __future__ import annotations

import io
import re

import pytest

from conftest import ROOT, compose
from medchat.inspect import inspect, main
from medchat.pipeline import preview

MISTRAL = ROOT.parent / "shared" / "tokenizers" / "mistral-7b-v0.1"


@pytest.fixture
def no_weights(monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("medchat.inspect loaded model weights")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def _trained_spans(text: str) -> list[str]:
    return re.findall(r"\[\[(.*?)\]\]", text, flags=re.S)


def _check_masks(cfg, eos: str, tmp_path):
    out = io.StringIO()
    result = inspect(preview(cfg), n=3, color=False, html_path=tmp_path / "inspect.html", out=out)
    text = out.getvalue()
    from medchat.data import load_split

    rows = load_split(cfg.dataset).train[:3]
    blocks = text.split("=== train row ")[1:4]
    assert len(blocks) == 3
    for row, block in zip(rows, blocks):
        spans = _trained_spans(block)
        doctor = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        patient = [m["content"] for m in row["messages"] if m["role"] == "user"]
        assert len(spans) == len(doctor), block[:500]
        for span, answer in zip(spans, doctor):
            assert span.strip().startswith(answer[:40].strip()) and span.rstrip().endswith(eos), span[-80:]
            assert answer.strip() in span
        assert not any(p[:40] in s for s in spans for p in patient)  # the patient's words are never trained
    page = (tmp_path / "inspect.html").read_text()
    assert page.count('<span class="t">') >= sum(len(_trained_spans(b)) for b in blocks)
    return result, text


def test_tiny_model_masks_lengths_and_truncation(tmp_path, no_weights):
    cfg = compose("dataset.n=40", "trainer.max_length=256")
    result, text = _check_masks(cfg, "<|im_end|>", tmp_path)
    stats = result["stats"]
    from medchat.data import load_split
    from medchat.formatting import tokenize_conversation
    from medchat.modeling import load_tokenizer

    tok = load_tokenizer(cfg.model)
    lengths = [len(tokenize_conversation(tok, r["messages"], "chat_template")["input_ids"])
               for r in load_split(cfg.dataset).train]
    assert stats["rows"] == len(lengths) and stats["max"] == max(lengths)
    assert stats["truncated_rows"] == sum(n > 256 for n in lengths) > 0
    assert f"{stats['truncated_rows']} of {stats['rows']} rows are longer than trainer.max_length=256" in text
    assert "<- max_length" in text and '"train":' in text  # histogram and the plan's data counts


def test_a_real_tokenizer_mistral_with_the_inst_template(tmp_path, no_weights):
    if not MISTRAL.is_dir():
        pytest.skip(f"{MISTRAL} not present")
    cfg = compose(f"model.tokenizer={MISTRAL}", "model.chat_template=inst", "dataset.n=20")
    _check_masks(cfg, "</s>", tmp_path)


def test_cli_colours_and_writes_html_in_the_run_dir(tmp_path, capsys, no_weights, monkeypatch):
    monkeypatch.chdir(ROOT)
    main(["--n", "1", "--color", "always", "--run-dir", str(tmp_path), "dataset.n=20"])
    out = capsys.readouterr().out
    assert "\033[42;30m" in out and "[[" not in out
    assert (tmp_path / "inspect.html").exists()
