"""Model building: QLoRA on CPU really trains every adapter; placement and pad choices."""

from __future__ import annotations

import pytest
import torch

from medchat import modeling, plan
from medchat.config import ConfigError, LoraConfig, ModelConfig, QuantConfig
from medchat.hardware import Hardware


def _lora_grads(tiny_dir, vocab, eval_first: bool) -> dict:
    torch.manual_seed(0)
    model = modeling.load_model(plan.model_plan(ModelConfig(dtype="float32"), QuantConfig(mode="nf4"), Hardware(),
                                                str(tiny_dir)))
    lora = LoraConfig(targets="all_linear", lora_dropout=0.0)
    model = modeling.apply_lora(model, modeling.lora_config(lora, ["q_proj", "v_proj", "down_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would hide a missing gradient path
            torch.nn.init.normal_(p, std=0.02)
    x = torch.randint(0, vocab, (1, 48), generator=torch.Generator().manual_seed(1))
    if eval_first:  # what trainer.evaluate() before training does
        model.eval()
        with torch.no_grad():
            model(input_ids=x)
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_nf4_lora_gets_every_gradient_after_an_eval_pass(tiny_dir, tiny_tokenizer):
    """bitsandbytes' CPU repacking (triggered by a no-grad eval forward) cuts the gradient path."""
    before = _lora_grads(tiny_dir, len(tiny_tokenizer), eval_first=False)
    after = _lora_grads(tiny_dir, len(tiny_tokenizer), eval_first=True)
    assert all(g is not None for g in after.values()), [n for n, g in after.items() if g is None]
    for name in before:
        torch.testing.assert_close(before[name], after[name])


def test_each_rank_holds_the_whole_model_on_its_own_device():
    rank3 = Hardware(cuda=True, gpus=4, bf16=True, world_size=4, local_world_size=4, local_rank=3)
    assert plan.model_plan(ModelConfig(), QuantConfig(mode="none"), rank3, "x").device == 3
    assert plan.model_plan(ModelConfig(), QuantConfig(mode="none"), Hardware(), "x").device is None


def test_auto_choices_without_a_gpu():
    assert plan.choose_dtype("auto", Hardware()) == "float32"
    assert plan.choose_precision("auto", Hardware()) == "fp32"
    with pytest.raises(ConfigError, match="trainer.precision=bf16 needs a CUDA GPU"):
        plan.choose_precision("bf16", Hardware())
    old_gpu = Hardware(cuda=True, gpus=1, bf16=False)  # e.g. a V100
    assert (plan.choose_dtype("auto", old_gpu), plan.choose_precision("auto", old_gpu)) == ("float16", "fp16")
    with pytest.raises(ConfigError, match="this GPU has no bf16 support"):
        plan.choose_precision("bf16", old_gpu)
