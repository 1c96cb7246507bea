"""Operators dispatched per decoder layer in one training forward + backward: a solo run's (PEFT's LoRA, and
medchat's fused LoRA) against a pack of N jobs (sweeps.packed: StackedLoRA and block_nlls), on CPU.

    python bench/packed_ops.py

Each dispatched aten operator is about one kernel launch on a GPU, and an eager 7B QLoRA step at 4 x 1,024 tokens
is bound by launching them (bench/RESULTS.md, issue 23: the GPU idles a quarter of the compiled step, more of the
eager one). A packed forward pays off only if it launches fewer operators per token than the solo runs it
replaces; this counts them (tiny model, fp32, dropout 0.05, 4 rows of 128 tokens a job, alternating r 8 / 16).
Recorded output: bench/RESULTS.md, issue 24.
"""
import collections
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from medchat.config import TinyModelConfig  # noqa: E402
from medchat.speed.fused_lora import fuse_lora, seed_tensors  # noqa: E402
from medchat.sweeps import packed  # noqa: E402
from medchat.tiny import tiny_model_dir  # noqa: E402

# metadata-only operators (views, allocations without a fill): no kernel on a GPU
NO_KERNEL = {"view", "_unsafe_view", "select", "slice", "transpose", "t", "detach", "lift_fresh", "expand",
             "unsqueeze", "squeeze", "reshape", "as_strided", "alias", "permute", "empty", "empty_like",
             "new_empty_strided", "empty_strided", "split", "unbind", "_reshape_alias"}


def kernels(c: collections.Counter) -> int:
    return sum(n for op, n in c.items() if op not in NO_KERNEL)


class Count(TorchDispatchMode):
    """Counts every aten operator dispatched while active, by name."""

    def __init__(self):
        super().__init__()
        self.c = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.c[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))



d = tiny_model_dir(TinyModelConfig())
T = ["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]
torch.manual_seed(0)
ids = torch.randint(4, 2000, (4, 128)); labels = ids.clone(); labels[:, :32] = -100
batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}



def solo(fused):
    m = get_peft_model(AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32),
                       LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=T))
    if fused:
        fuse_lora(m)
        seed_tensors(m)
    m.train()
    with Count() as c:
        m(**batch).loss.backward()
    return c.c



def pack(n):
    jobs = [packed.PackedJob(r=8 if j % 2 == 0 else 16, lora_alpha=16, lora_dropout=0.05, seed=j) for j in range(n)]
    p = packed.pack_model(AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32), jobs)
    p.model.train()
    merged, counts = packed.concat_rows([batch] * n, 0)
    with Count() as c:
        with p.ctx.packed(counts):
            out = packed.block_nlls(p.model, merged, counts, merged["labels"])
        torch.stack([o[0] for o in out]).sum().backward()
    return c.c


cfg = AutoModelForCausalLM.from_pretrained(d).config
print("tiny:", cfg.num_hidden_layers, "layers")
res = {"solo PEFT": solo(False), "solo fused": solo(True)}
for n in (1, 2, 4):
    res[f"pack {n}"] = pack(n)
for k, c in res.items():
    jobs = int(k.split()[-1]) if k.startswith("pack") else 1
    layers = cfg.num_hidden_layers
    print(f"{k:12s} aten ops {sum(c.values()):6d} ({sum(c.values()) / layers:6.1f} per layer); launching a kernel "
          f"{kernels(c):5d} ({kernels(c) / layers:6.1f} per layer, {kernels(c) / layers / jobs:6.1f} per layer and job)")
print()
print("top kernel-launching ops, pack 4 vs solo fused:")
for op, n in [(op, n) for op, n in res["pack 4"].most_common() if op not in NO_KERNEL][:20]:
    print(f"  {op:32s} {n:5d}  solo fused {res['solo fused'].get(op, 0):5d}")
