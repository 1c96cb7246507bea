"""Which piece of one fused LoRA projection makes the host wait for the GPU (issue 23; GPU only, ~20 s).

    python bench/sync_probe.py [--out results/sync_probe.md]

Call 14's profiles counted ~685 cudaStreamSynchronize and ~1,030 cudaMemcpyAsync calls per optimizer step of the
7B defaults (eager and compiled alike), ~447 of them under a top-level aten::copy_ that no operator encloses,
while torch's own sync-debug mode (`bench/host_reads.py --mode sync`) saw only 8 a step. This builds one
bitsandbytes NF4 projection of the Mistral-7B shape (4096 x 4096, double-quantized, bf16) with a PEFT LoRA r32
adapter (dropout 0.05) routed through medchat's fused LoRA, and profiles each piece of its training step alone,
`--repeats` times: the 4-bit dequantize, a seeded CUDA generator, the dropout mask, the fused forward, the
fused forward + backward. Each row: runtime calls per repeat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

RUNTIME = ("cudaStreamSynchronize", "cudaMemcpyAsync", "cudaDeviceSynchronize", "cudaEventSynchronize")


def count(fn, repeats: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    out = {}
    for evt in prof.events():
        if evt.name in RUNTIME or evt.name.startswith("Memcpy"):
            parent = evt.cpu_parent.name if evt.cpu_parent is not None else "-"
            key = f"{evt.name} (under {parent})"
            out[key] = out.get(key, 0) + 1
    return {k: v / repeats for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("GPU only: the waits are CUDA runtime calls")
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    from peft import LoraConfig, get_peft_model

    from medchat.speed import fused_lora

    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = bnb.nn.Linear4bit(4096, 4096, bias=False, compute_dtype=torch.bfloat16,
                                          compress_statistics=True, quant_type="nf4")

        def forward(self, x):
            return self.proj(x)

    model = One()
    model.proj.weight = bnb.nn.Params4bit(torch.randn(4096, 4096) * 0.02, requires_grad=False,
                                          compress_statistics=True, quant_type="nf4")
    model = model.cuda()
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=16, lora_dropout=0.05, target_modules=["proj"]))
    model.train()
    assert fused_lora.fuse_lora(model) == 1
    layer = next(m for m in model.modules() if getattr(m, fused_lora.FUSED_FLAG, False))
    base = layer.get_base_layer()
    qs = base.weight.quant_state
    x = torch.randn(a.tokens, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)

    def step():
        y = model(x)
        y.float().pow(2).mean().backward()

    pieces = {
        "dequantize_4bit (nested absmax)": lambda: bnbf.dequantize_4bit(base.weight.data, qs),
        "dequantized_weight(again=True)": lambda: fused_lora.dequantized_weight(base, torch.bfloat16, again=True),
        "torch.Generator(cuda) + manual_seed": lambda: torch.Generator(device="cuda").manual_seed(123),
        "dropout mask (_keep_mask)": lambda: fused_lora._keep_mask(x.detach(), 0.05, 123),
        "dropout mask (dropout_keep op, CPU seed tensor)":
            lambda: fused_lora.dropout_keep(x.detach(), 0.05, torch.tensor(123)),
        "fused forward (no grad)": lambda: model(x.detach()),
        "fused forward + backward": step,
    }
    lines = [f"runtime calls per repeat ({a.repeats} repeats; {torch.cuda.get_device_name()}, torch "
             f"{torch.__version__}, bitsandbytes {bnb.__version__}; quant_state offset on "
             f"{qs.offset.device if getattr(qs, 'offset', None) is not None else '-'}, code on {qs.code.device}, "
             f"state2 code on {qs.state2.code.device if qs.nested else '-'})", "",
             "piece | runtime call (enclosing operator) | per repeat", "---|---|---:"]
    for name, fn in pieces.items():
        got = count(fn, a.repeats)
        lines += [f"{name} | {k} | {v:g}" for k, v in sorted(got.items())] or [f"{name} | none | 0"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
