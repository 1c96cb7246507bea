"""Loss is on the doctor's turns plus EOS, nothing else; pad is never EOS."""

from __future__ import annotations

import pytest

from medchat.formatting import TemplateError, load_chat_template, prompt_ids, tokenize_conversation
from medchat.modeling import ensure_pad_token

CONVERSATION = [
    {"role": "system", "content": "You are a careful doctor."},
    {"role": "user", "content": "I have had a dry cough for two weeks."},
    {"role": "assistant", "content": "Hello. A cough for two weeks is often post-viral; see a doctor if it persists."},
    {"role": "user", "content": "Should I take antibiotics?"},
    {"role": "assistant", "content": "Not without an examination: most coughs are viral."},
]


def trained_text(tokenizer, example) -> list[str]:
    """Decode each contiguous run of trained tokens."""
    spans, current = [], []
    for tok, m in zip(example["input_ids"], example["assistant_masks"]):
        if m:
            current.append(tok)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return [tokenizer.decode(s) for s in spans]


@pytest.mark.parametrize("prompt_format", ["chat_template", "plain"])
def test_labels_are_exactly_the_doctor_turns_plus_eos(tiny_tokenizer, prompt_format):
    example = tokenize_conversation(tiny_tokenizer, CONVERSATION, prompt_format)
    eos = tiny_tokenizer.eos_token
    spans = trained_text(tiny_tokenizer, example)
    expected = [m["content"] + eos for m in CONVERSATION if m["role"] == "assistant"]
    if prompt_format == "plain":
        expected = [" " + e for e in expected]
    assert spans == expected
    # every trained span ends with EOS, and the EOS token itself carries a label
    eos_positions = [i for i, t in enumerate(example["input_ids"]) if t == tiny_tokenizer.eos_token_id]
    assert any(example["assistant_masks"][i] for i in eos_positions)


def test_mask_matches_the_templates_generation_markers(tiny_tokenizer):
    out = tiny_tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=True)
    ours = tokenize_conversation(tiny_tokenizer, CONVERSATION, "chat_template")
    assert list(out["input_ids"]) == ours["input_ids"]
    assert list(out["assistant_masks"]) == ours["assistant_masks"]


def test_prompt_is_a_prefix_of_the_training_sequence(tiny_tokenizer):
    for fmt in ("chat_template", "plain"):
        full = tokenize_conversation(tiny_tokenizer, CONVERSATION, fmt)["input_ids"]
        prompt = prompt_ids(tiny_tokenizer, CONVERSATION[:2], fmt)
        assert full[: len(prompt)] == prompt


def test_template_without_eos_is_refused(tiny_tokenizer):
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    tok.chat_template = load_chat_template("chatml").replace("+ eos_token", "+ '<|endoftext|>'")
    with pytest.raises(TemplateError, match="never learn to stop"):
        tokenize_conversation(tok, CONVERSATION, "chat_template")


def test_pad_equal_to_eos_is_replaced(tiny_tokenizer):
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    tok.pad_token = tok.eos_token
    ensure_pad_token(tok)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_shipped_inst_template_masks_answers(tiny_tokenizer):
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    tok.chat_template = load_chat_template("inst")
    example = tokenize_conversation(tok, CONVERSATION, "chat_template")
    spans = trained_text(tok, example)
    assert spans == [" " + m["content"] + tok.eos_token for m in CONVERSATION if m["role"] == "assistant"]
