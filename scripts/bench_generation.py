#!/usr/bin/env python3
"""Time evaluation-set generation: one prompt at a time against batches, NF4+LoRA against merged weights.

It runs medchat's own generation code (medchat.evaluation.generation.generate: left padding, EOS-aware
cutting) on two kinds of model:

  --model tiny              the offline tiny Llama on CPU, prompts = questions of the MedQuAD sample (a smoke check;
                            also asserts that batched greedy outputs equal one-at-a-time outputs)
  --model mistral7b-random  a Mistral-7B-shaped model with random weights on one GPU (no download needed),
                            prompts = random token ids with lengths drawn uniformly from --prompt-len

Setups (--setups):
  nf4-lora  base weights quantized to NF4 (bitsandbytes) with a rank-16 all-linear LoRA adapter unmerged:
            how the notebooks generate, and evaluate.py with merge=false
  merged    the adapter merged into model-dtype weights (bf16 on GPU): evaluate.py's default (merge=true)
  merged-static  as merged, with transformers' static KV cache (cache_implementation=static: one padded shape
            per eval set, so decoding compiles once)
  merged-auto  as merged, with evaluate.py's default (cache_implementation=auto: static on a GPU)
  chat-merged, chat-merged-dynamic, chat-nf4-lora  medchat.chat's streaming path (inference.ChatModel.stream_ids,
            batch 1, one answer after another on the first --unbatched-prompts prompts): its default (a static
            cache of --chat-context positions reused across answers on a GPU), the dynamic cache, and NF4+LoRA
Each setup runs at batch size 1 on the first --unbatched-prompts prompts, and at every --batch-sizes
value on all --prompts prompts. Throughput counts only real new tokens (up to and including each row's
EOS), over wall time from the first batch to the last, after one warm-up call.

    # CPU smoke check (what docs/bench/generation_tiny_cpu.md records):
    PYTHONPATH=src python scripts/bench_generation.py --model tiny --prompts 32 --unbatched-prompts 32 \\
        --batch-sizes 8,32 --max-new-tokens 64 --out docs/bench/generation_tiny_cpu.md
    # One H100, Mistral-7B shape (the command docs/evaluation.md gives; bitsandbytes must be importable):
    PYTHONPATH=src python scripts/bench_generation.py --model mistral7b-random --prompts 256 \\
        --unbatched-prompts 4 --batch-sizes 32,64,128,256 --nf4-batch-sizes 32 --max-new-tokens 128 \\
        --setups merged,nf4-lora --out bench_h100.md
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from medchat.config import GenerationSettings  # noqa: E402
from medchat.evaluation.generation import GenerationStats, generate  # noqa: E402

LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ANCHOR = {("nf4-lora", 1): 13.0, ("nf4-lora", 32): 377.0}  # the measurement, one H100, 128 new tokens


class IdTokenizer:
    """What generate() needs of a tokenizer, for a model with no real vocabulary (random weights)."""

    pad_token_id, eos_token_id = 0, 2
    all_special_tokens: list[str] = []

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))

    def get_vocab(self) -> dict:
        return {}


def mistral7b_random(device: str, num_layers: int = 32):
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=num_layers,
                           num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                           rope_theta=10000.0, sliding_window=None, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                           tie_word_embeddings=False)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = MistralForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=0)
    return model.eval(), IdTokenizer(), torch.bfloat16


def tiny(device: str):
    from medchat.config import ModelConfig
    from medchat.modeling import load_tokenizer, model_path
    from transformers import AutoModelForCausalLM

    cfg = ModelConfig(chat_template="chatml", dtype="float32")
    path = model_path(cfg)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").to(device)
    return model.eval(), load_tokenizer(cfg, path=path), torch.float32


def random_lora(model, seed: int = 1):
    """A rank-16 all-linear LoRA adapter with non-zero B (a fresh adapter's B is zero and would change nothing)."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LINEAR))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=g) * 1e-3).to(p.dtype))
    return peft_model.eval()


def quantize_nf4_(model, compute_dtype) -> None:
    """Replace every decoder Linear by a bitsandbytes NF4 Linear4bit (double quant), in place."""
    import bitsandbytes as bnb

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and name in LINEAR:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                      device="meta")
                device = child.weight.device
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4")
                q = q.to(device)  # quantizes on the way
                setattr(parent, name, q)
    model.is_loaded_in_4bit = True  # what PEFT reads to wrap Linear4bit layers


def prompts_for(args, tokenizer) -> list[list[int]]:
    if args.model == "tiny":
        from medchat.data.readers import resolve_path
        from medchat.formatting import prompt_ids

        lines = resolve_path("medchat:sample_data/medquad.jsonl").read_text().splitlines()[-args.prompts:]
        return [prompt_ids(tokenizer, [{"role": "user", "content": json.loads(line)["question"]}], "chat_template")
                for line in lines]
    rng = random.Random(0)
    lo, hi = map(int, args.prompt_len.split(","))
    return [[1] + [rng.randrange(3, 32000) for _ in range(rng.randint(lo, hi) - 1)] for _ in range(args.prompts)]


def timed(model, tokenizer, prompts, batch_size, args, cache=None):
    if cache in ("static", "auto"):  # warm up on the timed run's one padded shape (compiles once, outside the timing)
        longest = max(prompts, key=len)
        generate(model, tokenizer, [longest] * min(batch_size, len(prompts)),
                 GenerationSettings(max_new_tokens=args.max_new_tokens), batch_size=batch_size, cache_implementation=cache)
    else:
        generate(model, tokenizer, prompts[:batch_size], GenerationSettings(max_new_tokens=4), batch_size=batch_size)
    stats = GenerationStats()
    out = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=args.max_new_tokens),
                   batch_size=batch_size, cache_implementation=cache, stats=stats)
    return out, stats


def run_chat(setup: str, model, tokenizer, prompts, args, rows: list) -> None:
    try:
        _run_chat(setup, model, tokenizer, prompts, args, rows)
    except Exception as e:  # recorded, so that one failing path does not hide the others' numbers
        row = {"setup": setup, "batch_size": 1, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)


def _run_chat(setup: str, model, tokenizer, prompts, args, rows: list) -> None:
    """Answers streamed one after another, as a chat session does: tokens/s over all of them after one warm-up
    answer (which absorbs the static cache's one compilation)."""
    from medchat.config import GenerationSettings
    from medchat.inference import ChatModel

    cache = "dynamic" if setup == "chat-merged-dynamic" else "auto"
    bot = ChatModel(model, tokenizer, "plain", None, args.chat_context, cache_implementation=cache)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=False)
    subset = prompts[: args.unbatched_prompts]
    list(bot.stream_ids(subset[0], settings))  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start, pieces = time.perf_counter(), 0
    for ids in subset:
        text = "".join(bot.stream_ids(ids, settings))
        # IdTokenizer decodes each id as one word; for the tiny model's real tokenizer this is words, not tokens
        pieces += len(text.split()) if isinstance(tokenizer, IdTokenizer) else len(tokenizer(text)["input_ids"])
    seconds = time.perf_counter() - start
    row = {"setup": setup, "batch_size": 1, "prompts": len(subset), "new_tokens": pieces,
           "seconds": round(seconds, 2), "tokens_per_s": round(pieces / seconds, 1), "eos_rows": None,
           "greedy_equal_to_batch_1": "n/a"}
    rows.append(row)
    print(json.dumps(row), flush=True)


def run_setup(setup: str, model, tokenizer, prompts, args, rows: list, outputs: dict) -> None:
    cache = {"merged-static": "static", "merged-auto": "auto"}.get(setup)
    batch_sizes = args.nf4_batch_sizes if setup == "nf4-lora" else args.batch_sizes
    sizes = [1] + [b for b in batch_sizes if b != 1]
    for b in sizes:
        subset = prompts[: args.unbatched_prompts] if b == 1 else prompts
        out, stats = timed(model, tokenizer, subset, b, args, cache)
        outputs[(setup, b)] = [g.token_ids for g in out]
        first = outputs[(setup, 1)][: len(out)]
        same = sum(a == c for a, c in zip(first, [g.token_ids for g in out]))
        row = {"setup": setup, "batch_size": b, "prompts": len(subset), "new_tokens": stats.new_tokens,
               "seconds": round(stats.seconds, 2), "tokens_per_s": round(stats.tokens_per_second, 1),
               "eos_rows": sum(g.ended_with_eos for g in out),
               "greedy_equal_to_batch_1": f"{same}/{min(len(first), len(out))}"}
        rows.append(row)
        print(json.dumps(row), flush=True)


def environment(device: str) -> dict:
    import importlib.metadata as md

    env = {"python": platform.python_version(), "device": device}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    else:
        env["cpu_threads"] = torch.get_num_threads()
    return env


def markdown(args, env: dict, rows: list) -> str:
    lines = [f"# Generation benchmark: {args.model}", "",
             f"Command: `python {' '.join(sys.argv)}`", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             f"{args.max_new_tokens} new tokens at most per prompt, greedy. Batch size 1 runs the first "
             f"{args.unbatched_prompts} prompts; the other batch sizes run all {args.prompts}.", "",
             "| setup | batch | prompts | new tokens | seconds | tokens/s | x vs NF4+LoRA batch 1 | rows ending in EOS "
             "| greedy = batch 1 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = next((r["tokens_per_s"] for r in rows if r["setup"] == "nf4-lora" and r["batch_size"] == 1), None)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['setup']} | {r['batch_size']} | failed: {r['error']} | | | | | | |")
            continue
        speedup = f"{r['tokens_per_s'] / base:.1f}" if base else "n/a"
        lines.append(f"| {r['setup']} | {r['batch_size']} | {r['prompts']} | {r['new_tokens']} | {r['seconds']} | "
                     f"{r['tokens_per_s']} | {speedup} | {r['eos_rows']} | {r['greedy_equal_to_batch_1']} |")
    if args.model == "mistral7b-random":
        lines += ["", "Anchor (the issue's measurement, one H100, NF4, 128 new tokens): 13 tokens/s one at a time, "
                  "377 tokens/s in batches of 32; target: at least 1,500 tokens/s."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("tiny", "mistral7b-random"), default="tiny")
    p.add_argument("--setups", default="merged,nf4-lora", help="comma list of nf4-lora, merged, merged-static, merged-auto")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--unbatched-prompts", type=int, default=4)
    p.add_argument("--batch-sizes", default="8,32")
    p.add_argument("--nf4-batch-sizes", default=None, help="batch sizes for nf4-lora (default: --batch-sizes)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--prompt-len", default="96,320", help="mistral7b-random: min,max prompt tokens")
    p.add_argument("--num-layers", type=int, default=32, help="mistral7b-random: fewer layers, for a smoke check only")
    p.add_argument("--chat-context", type=int, default=1024, help="chat setups: ChatModel's max_context")
    p.add_argument("--out", type=Path, help="write the Markdown table here (and .json beside it)")
    args = p.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.nf4_batch_sizes = [int(b) for b in (args.nf4_batch_sizes or ",".join(map(str, args.batch_sizes))).split(",")]
    setups = args.setups.split(",")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.model == "mistral7b-random":
        model, tokenizer, dtype = mistral7b_random(device, args.num_layers)
    else:
        model, tokenizer, dtype = tiny(device)
    prompts = prompts_for(args, tokenizer)
    rows, outputs = [], {}
    # merged first: the same weights are quantized in place afterwards for nf4-lora
    model = random_lora(model).merge_and_unload().eval()
    for setup in [s for s in setups if s.startswith("merged")]:
        run_setup(setup, model, tokenizer, prompts, args, rows, outputs)
    for setup in [s for s in setups if s.startswith("chat-merged")]:
        run_chat(setup, model, tokenizer, prompts, args, rows)
    if "nf4-lora" in setups or "chat-nf4-lora" in setups:
        quantize_nf4_(model, dtype)
        lora = random_lora(model)
        if "nf4-lora" in setups:
            run_setup("nf4-lora", lora, tokenizer, prompts, args, rows, outputs)
        if "chat-nf4-lora" in setups:
            run_chat("chat-nf4-lora", lora, tokenizer, prompts, args, rows)
    env = environment(device)
    text = markdown(args, env, rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows, "argv": sys.argv}, indent=2) + "\n")
    unequal = [r for r in rows if r["setup"] != "nf4-lora" and not r["setup"].startswith("chat") and "error" not in r and int(r["greedy_equal_to_batch_1"].split("/")[0])
               != int(r["greedy_equal_to_batch_1"].split("/")[1])]
    if args.model == "tiny" and unequal:
        print(f"batched greedy outputs differ from one-at-a-time outputs: {unequal}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
