"""trainer.fixed_shape (issue 23): every training micro-batch padded to one shape, rows x max_length tokens.

What must hold: the plan sizes it from the batch and TRL's collator gets it; no real token is lost or moved; the
padding is never trained (labels -100) and never attended by a real token; so the loss and the adapter's
gradients equal the unpadded batch's (the reference: the same model on TRL's collator without padding).
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import compose

FAST = ["trainer=debug", "dataset.n=64", "dataset.eval_size=8", "tracker=none", "trainer.eval_strategy=no",
        "trainer.max_length=256", "trainer.logging_steps=1", "trainer.save_steps=3"]


def test_the_plan_sizes_the_shape_and_the_sft_config_carries_it(tmp_path):
    from medchat import plan, training
    from medchat.hardware import Hardware

    cfg = compose("trainer.fixed_shape=true", "trainer.max_length=512", "trainer.per_device_train_batch_size=3")
    p = plan.resolve(cfg, Hardware())
    assert p.fixed_shape_tokens == 3 * 512  # packed: the micro-batch's rows flattened into one sequence
    args = training.sft_config(cfg.trainer, cfg.tracker, tmp_path, p)
    assert args.pad_to_multiple_of == 3 * 512 and args.packing
    padded = compose("trainer.fixed_shape=true", "trainer.max_length=512", "trainer.packing=false")
    assert plan.resolve(padded, Hardware()).fixed_shape_tokens == 512  # padded rows: each row max_length long
    for value in ("auto", "false"):  # auto: only where the layers are compiled (off here)
        p = plan.resolve(compose(f"trainer.fixed_shape={value}"), Hardware())
        assert p.fixed_shape_tokens is None
        assert training.sft_config(cfg.trainer, cfg.tracker, tmp_path, p).pad_to_multiple_of is None
    assert "fixed shape 1536" in plan.resolve(cfg, Hardware()).describe()
    # compiled layers get one shape under auto (flex_attention cannot be lowered dynamic-shaped); false keeps
    # them dynamic
    compiled = plan.resolve(compose("trainer.compile=true", "trainer.max_length=512"), Hardware())
    assert compiled.compile and compiled.fixed_shape_tokens == 4 * 512
    dynamic = plan.resolve(compose("trainer.compile=true", "trainer.fixed_shape=false"), Hardware())
    assert dynamic.compile and dynamic.fixed_shape_tokens is None
    # python -m medchat.plan says why compile is off under auto (tests/test_speed.py: where auto compiles), and
    # that it was asked for otherwise
    assert "compile False (auto: off: no CUDA GPU)" in plan.resolve(compose(), Hardware()).describe()
    assert "compile True (trainer.compile=true)" in compiled.describe()


def _packed_rows(vocab: int, seed: int = 0) -> list[dict]:
    """Three packed rows as TRL's BFD packing gives them: documents of a row concatenated, seq_lengths per
    document, the prompt part of each document masked out of the labels."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for docs in ([40, 25, 30], [60, 17], [33, 33, 20, 9]):
        ids, labels = [], []
        for n in docs:
            d = torch.randint(3, vocab, (n,), generator=g).tolist()
            ids += d
            labels += [-100] * (n // 3) + d[n // 3:]
        rows.append({"input_ids": ids, "labels": labels, "seq_lengths": docs})
    return rows


def test_padding_is_neither_trained_nor_attended_and_changes_no_gradient(tiny_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from medchat.speed.apply import fixed_shape_tokens

    rows_per_micro_batch, max_length = 3, 128
    trainer_cfg = compose(f"trainer.max_length={max_length}",
                          f"trainer.per_device_train_batch_size={rows_per_micro_batch}").trainer
    length = fixed_shape_tokens(trainer_cfg, rows_per_micro_batch)
    assert length == 384
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():  # a nonzero B, so the adapter's input gradients reach every layer
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    rows = _packed_rows(model.config.vocab_size)
    pad = 0
    plain = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)(rows)
    fixed = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True, pad_to_multiple_of=length)(rows)
    n = plain["input_ids"].shape[1]
    assert fixed["input_ids"].shape == (1, length) and n < length
    for key in ("input_ids", "labels", "position_ids"):  # no real token lost or moved
        assert torch.equal(fixed[key][:, :n], plain[key]), key
    assert (fixed["labels"][:, n:] == -100).all() and (fixed["input_ids"][:, n:] == pad).all()

    def run(batch):
        model.zero_grad()
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"])
        out.loss.backward()
        return out.logits[0, :n].detach(), out.loss.detach(), {
            k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    logits_a, loss_a, grads_a = run(plain)
    logits_b, loss_b, grads_b = run(fixed)
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-5, atol=1e-5)  # no real token attends to padding
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)  # the same tokens trained, the same mean
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 3 * len(model.base_model.model.model.layers) * 2
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], rtol=1e-4, atol=1e-6, msg=k)


def test_a_fixed_shape_run_trains_as_the_unpadded_run_and_reports_its_padding(tmp_path):
    from medchat.pipeline import train

    metrics = {}
    for name, extra in (("plain", []), ("fixed", ["trainer.fixed_shape=true"])):
        # dropout 0: a padded micro-batch draws its dropout mask over more positions, so with dropout the two
        # runs differ by their masks (equal in distribution), not by what the padding computes
        metrics[name] = train(compose(*FAST, "trainer.max_steps=3", "lora.lora_dropout=0", *extra), tmp_path / name)
    losses = {name: [h["loss"] for h in json.loads((tmp_path / name / "checkpoints").joinpath(
        "checkpoint-3", "trainer_state.json").read_text())["log_history"] if "loss" in h] for name in metrics}
    assert len(losses["fixed"]) == 3
    assert losses["fixed"] == pytest.approx(losses["plain"], abs=1e-4)
    speed = metrics["fixed"]["speed"]
    rows = metrics["fixed"]["speed"]["per_device_train_batch_size"]
    assert speed["fixed_shape_tokens"] == rows * 256
    assert 0 < speed["padding_share"] < 1
    assert metrics["plain"]["speed"]["fixed_shape_tokens"] is None
    assert metrics["fixed"]["num_input_tokens_seen"] == metrics["plain"]["num_input_tokens_seen"]  # real tokens
