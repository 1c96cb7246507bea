"""Unsloth on the bench's model and rows: one setup per process, in Unsloth's own environment.

    PYTHONPATH=/tmp/usite python bench/unsloth_throughput.py --model /tmp/mb/mistral7b-nf4 --setup padded_offload

bench/qlora_throughput.py runs this as its `unsloth_*` setups (with --unsloth-site pointing at Unsloth's
packages: it pins trl<=1.15, transformers<=5.17, datasets<5, so it cannot share medchat's environment) and
prints one JSON line, `RESULT {...}`, that the bench adds to its table.

The loop is Unsloth's fast path as its notebooks use it, without TRL (which Unsloth patches per version): its
FastLanguageModel over the same pre-quantized NF4 weights, LoRA r32 alpha 64 on all 7 projections with
dropout 0 (Unsloth's fast kernels require it), fused AdamW, lr 2e-4, the same iCliniq row lengths in a
seeded random order; `padded_*`: 4 rows a step padded to the longest; `packed`: rows packed first-fit into
4 x 1,024 tokens and concatenated into one row with restarting position_ids (document isolation depends on
the attention kernel and is not verified). Real tokens = non-pad tokens, as the bench counts them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
import unsloth  # noqa: E402,F401  (before transformers, as Unsloth requires)
from unsloth import FastLanguageModel  # noqa: E402

import torch  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SETUPS = {"padded_offload": ("padded", "unsloth"), "padded": ("padded", False), "packed": ("packed", False)}


def batches(lengths_file: Path, vocab: int, how: str, rows_per_step: int = 4, pack_len: int = 1024, seed: int = 0):
    pairs = json.loads(lengths_file.read_text())["prompt_answer_tokens"]
    rng = random.Random(seed)
    rows = []
    for p, a in pairs:
        ids = [rng.randrange(10, min(vocab, 2000)) for _ in range(p + a)]
        rows.append((ids, [-100] * p + ids[p:]))
    order = list(range(len(rows)))
    random.Random(seed + 1).shuffle(order)
    rows = [rows[i] for i in order]
    if how == "padded":
        for b in range(0, len(rows) - rows_per_step + 1, rows_per_step):
            chunk = rows[b:b + rows_per_step]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, (x, y) in enumerate(chunk):
                ids[i, :len(x)], labels[i, :len(y)], mask[i, :len(x)] = torch.tensor(x), torch.tensor(y), 1
            yield {"input_ids": ids, "attention_mask": mask, "labels": labels}, int(mask.sum())
        return
    bins: list[list[tuple]] = []  # first-fit into rows of pack_len tokens
    for r in rows:
        for bin_ in bins:
            if sum(len(x) for x, _ in bin_) + len(r[0]) <= pack_len:
                bin_.append(r)
                break
        else:
            bins.append([r])
    for b in range(0, len(bins) - rows_per_step + 1, rows_per_step):
        docs = [d for bin_ in bins[b:b + rows_per_step] for d in bin_]
        ids = torch.tensor([t for x, _ in docs for t in x])[None]
        labels = torch.tensor([t for _, y in docs for t in ([-100] + y[1:])])[None]  # no loss across documents
        pos = torch.tensor([i for x, _ in docs for i in range(len(x))])[None]
        yield {"input_ids": ids, "position_ids": pos, "labels": labels}, ids.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--setup", required=True, choices=sorted(SETUPS))
    ap.add_argument("--lengths", default=str(Path(__file__).resolve().parent / "icliniq_lengths.json"))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4)
    a = ap.parse_args()
    how, ckpt = SETUPS[a.setup]
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    model, tokenizer = FastLanguageModel.from_pretrained(model_name=a.model, max_seq_length=4096,
                                                         dtype=torch.bfloat16, load_in_4bit=True)
    model = FastLanguageModel.get_peft_model(model, r=32, lora_alpha=64, lora_dropout=0, target_modules=TARGETS,
                                             bias="none", use_gradient_checkpointing=ckpt, random_state=0)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, fused=True)
    load_s = time.time() - t0
    marks, tokens = [], 0
    it = batches(Path(a.lengths), model.config.vocab_size, how)
    for step in range(a.warmup + a.steps):
        batch, n = next(it)
        batch = {k: v.cuda(non_blocking=True) for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= a.warmup - 1:
            torch.cuda.synchronize()
            marks.append(time.perf_counter())
            if step >= a.warmup:
                tokens += n
    seconds = marks[-1] - marks[0]
    result = {"setup": f"unsloth_{a.setup}", "micro_batch": ("4 rows padded to the longest" if how == "padded"
                                                             else "4 x 1,024 packed into one row, restarting position_ids"),
              "checkpointing": str(ckpt), "lora_dropout": 0.0, "optim": "adamw fused (torch)",
              "timed_steps": a.steps, "timed_seconds": round(seconds, 3), "real_tokens": tokens,
              "tokens_per_s": round(tokens / seconds, 1), "seconds_per_step": round(seconds / a.steps, 4),
              "load_seconds": round(load_s, 1), "final_loss": float(loss),
              "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
              "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
              "checkpointed_layers": model.config.num_hidden_layers if ckpt else 0,
              "versions": {"unsloth": unsloth.__version__, "torch": torch.__version__,
                           "transformers": __import__("transformers").__version__}}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
