"""What `merge=true` (evaluate.py's, chat's and export's default) computes: each adapted weight becomes
W + s * B @ A summed in fp32 and rounded once to the model dtype, checked against that formula written out here.

Why it matters (bench/RESULTS.md, merge fidelity): in bf16, a delta below half a bf16 step of its weight vanishes
in that one rounding; a second rounding (the delta cast to bf16 first, as PEFT's safe_merge path does) would add
its own error on top.
"""

from __future__ import annotations

import torch


def test_merge_sums_in_fp32_and_rounds_once_to_the_model_dtype(tmp_path, tiny_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from medchat import run_models

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    weights = {n: p.detach().float().clone() for n, p in base.named_parameters()}
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    lora = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
                a.copy_(torch.randn_like(a) * 0.05)
                b.copy_(torch.randn_like(b) * 1e-3)  # deltas around a bf16 step of the weights: some vanish
                lora[name.removeprefix("base_model.model.")] = (a.float().clone(), b.float().clone(),
                                                               module.scaling["default"])
    assert lora and all(a.dtype == torch.float32 for a, _, _ in lora.values())  # PEFT keeps the adapter fp32
    model.save_pretrained(tmp_path / "adapter")

    fresh = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    merged = dict(run_models.add_adapter(fresh, tmp_path / "adapter", merge=True).named_parameters())
    vanished = nonzero = twice_rounded_differs = 0
    for name, (a, b, scale) in lora.items():
        w = weights[f"{name}.weight"]
        delta = (b @ a) * scale
        expected = (w + delta).to(torch.bfloat16)
        got = merged[f"{name}.weight"]
        assert got.dtype == torch.bfloat16
        assert torch.equal(got, expected), name
        twice_rounded_differs += int((expected != (w + delta.to(torch.bfloat16).float()).to(torch.bfloat16)).sum())
        vanished += int(((expected.float() == w) & (delta != 0)).sum())
        nonzero += int((delta != 0).sum())
    assert 0 < vanished < nonzero  # the rounding is real: some deltas are lost, most are not
    assert twice_rounded_differs > 0  # and this check tells one rounding from two
