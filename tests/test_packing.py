"""Packed (padding-free) rows give the same logits as each example alone: no cross-example attention."""

from __future__ import annotations

import os

import pytest
import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from medchat.config import ModelConfig, QuantConfig
from medchat.formatting import tokenize_conversation
from medchat.hardware import Hardware
from medchat.modeling import load_model
from medchat.plan import model_plan

CONVERSATIONS = [
    [{"role": "user", "content": "My knee hurts when I climb stairs."},
     {"role": "assistant", "content": "That suggests patellofemoral pain; strengthen the quadriceps."}],
    [{"role": "user", "content": "I get heartburn after dinner every night, what can I do?"},
     {"role": "assistant", "content": "Eat earlier, smaller meals and raise the head of the bed."}],
    [{"role": "user", "content": "Is a fever of 38.5 dangerous for an adult?"},
     {"role": "assistant", "content": "Usually not; rest and fluids, but seek care if it lasts over three days."}],
]


def _examples(tokenizer):
    rows = []
    for c in CONVERSATIONS:
        ex = tokenize_conversation(tokenizer, c, "chat_template")
        rows.append({"input_ids": ex["input_ids"],
                     "labels": [t if m else -100 for t, m in zip(ex["input_ids"], ex["assistant_masks"])]})
    return rows


# flex_attention is what `auto` picks on a GPU; on CPU it compiles through a C++ toolchain (about a minute on
# 2 cores; measured max difference 4e-7), so it runs only with MEDCHAT_SLOW_TESTS=1.
SLOW = pytest.mark.skipif(not os.environ.get("MEDCHAT_SLOW_TESTS"), reason="set MEDCHAT_SLOW_TESTS=1 (compiles)")


@pytest.mark.parametrize("attn", ["sdpa", "eager", pytest.param("flex_attention", marks=SLOW)])
def test_packed_forward_equals_unpacked(tiny_dir, tiny_tokenizer, attn):
    model = load_model(model_plan(ModelConfig(dtype="float32", attn_implementation=attn), QuantConfig(mode="none"),
                                  Hardware(), str(tiny_dir)))
    model.eval()
    rows = _examples(tiny_tokenizer)
    batch = DataCollatorForLanguageModeling(pad_token_id=tiny_tokenizer.pad_token_id, padding_free=True)(rows)
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        alone = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
        # Negative control: the same row with positions running on, as naive packing does.
        naive = model(input_ids=batch["input_ids"]).logits[0]
    start, worst = 0, 0.0
    for logits in alone:
        n = logits.shape[0]
        worst = max(worst, (packed[start : start + n] - logits).abs().max().item())
        start += n
    assert worst < 1e-5, worst
    n0 = alone[0].shape[0]
    assert (naive[n0:] - packed[n0:]).abs().max().item() > 1e-2  # the control does leak across examples

    # Labels survive packing: each example's trained tokens, minus the first token of each example.
    expected = torch.cat([torch.tensor(r["labels"]) for r in rows])
    got = batch["labels"][0]
    assert torch.equal(got[batch["position_ids"][0] != 0], expected[batch["position_ids"][0] != 0])
