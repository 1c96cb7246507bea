"""Merge fidelity: does the merged model evaluate.py and chat load by default compute the function the run trained?

    python bench/merge_fidelity.py RUN_DIR [RUN_DIR ...] --out bench/results/merge_fidelity.json   # a GPU
    python bench/merge_fidelity.py runs/tiny --rows 8 --prompts 4                                   # CPU smoke

The run trained `y = W x + s B A x` with W the 4-bit base dequantized to the model dtype (bf16 on a GPU) and the
adapter in fp32 under bf16 autocast. Three ways of loading the run for evaluation, all through medchat.runs:

- `unmerged`: the 4-bit base with the adapter beside it (PeftModel), the trained function itself;
- `merged`: the base dequantized to the model dtype and the adapter folded in (`merge=true`, evaluate.py's and
  chat's default): PEFT adds `s B A` to each bf16 weight in fp32 and rounds the sum to bf16 once, so a delta below
  half a bf16 step of its weight is lost;
- `merged_fp32`: the same fold into fp32 weights (no rounding of the sum; twice the memory of `merged`).

Also measured directly on the weights: the share of the adapter's nonzero delta elements that rounding W + delta
to bf16 makes vanish, and the relative L2 error of the delta the bf16 weights realise.

Scored on the run's held-out rows (RUN/eval.jsonl): the token-weighted perplexity of the doctor's answers
(medchat.evaluation.perplexity, the definition evaluate.py and metrics.json use) with its 95% bootstrap interval
over rows, and each variant's paired difference from `unmerged` with the interval of the difference
(medchat.evaluation.intervals, the same bootstrap as evaluate.py's compare_base); greedy generation on the first
`--prompts` prompts: how many of them give the same tokens as `unmerged`, and the mean position of the first
differing token. The merged variant is faithful when its perplexity difference is inside the interval the rows'
sampling gives the perplexity itself, i.e. smaller than the noise evaluate.py reports beside its numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402


def load(run, variant: str, survival: dict):
    """(model, tokenizer) for one variant, built with medchat.run_models' own loaders. merged_fp32 also fills
    `survival` (delta_survival) from its fp32 weights before folding the adapter in."""
    from medchat import run_models

    if variant == "unmerged":
        return run_models.load_for_generation(run, merge=False)
    if variant == "merged":
        return run_models.load_for_generation(run, merge=True)
    tokenizer = run_models.run_tokenizer(run)
    plan = run_models.generation_plan(run.cfg.model, run.cfg.quant, run_models.check_base(run, tokenizer=tokenizer))
    base = run_models.load_base(plan, dequantize=True)
    bf16 = next(base.parameters()).dtype
    model = run_models.add_adapter(base.float(), run.adapter)  # the trained (bf16-dequantized) weights, exactly, in fp32
    survival.update(delta_survival(model, bf16))
    model = model.merge_and_unload()
    run_models.set_stop_tokens(model, tokenizer)
    return model, tokenizer


@torch.no_grad()
def delta_survival(peft_model, dtype: torch.dtype) -> dict:
    """What rounding W + s*B@A to `dtype` keeps of the adapter's deltas, over every adapted weight: the share of
    nonzero delta elements that vanish (the rounded sum equals W), and the relative L2 error of the realised delta
    (rounded sum - W) against the delta itself."""
    lost = nonzero = 0
    err2 = ref2 = 0.0
    for module in peft_model.modules():
        if not hasattr(module, "get_delta_weight") or not getattr(module, "lora_A", None):
            continue
        for name in module.lora_A:
            w = module.get_base_layer().weight.float()
            d = module.get_delta_weight(name).float()
            realised = (w + d).to(dtype).float() - w
            lost += int(((realised == 0) & (d != 0)).sum())
            nonzero += int((d != 0).sum())
            err2 += float(((realised - d) ** 2).sum())
            ref2 += float((d**2).sum())
    return {"dtype": str(dtype), "delta_elements": nonzero, "vanished_share": lost / max(nonzero, 1),
            "realised_delta_rel_l2_error": (err2 / ref2) ** 0.5 if ref2 else None}


def measure(run_dir: str, rows: int, prompts: int, max_new_tokens: int, batch_size: int) -> dict:
    from medchat import runs
    from medchat.evaluation import generation, intervals, perplexity
    from medchat.formatting import prompt_ids

    run = runs.open_run(run_dir)
    records = run.eval_rows()[:rows] if rows else run.eval_rows()
    conversations = [r["messages"] for r in records]
    out = {"run_dir": run_dir, "base": run.cfg.model.name_or_path, "quant": run.cfg.quant.mode,
           "rows": len(conversations), "variants": {}}
    nlls, texts, survival = {}, {}, {}
    for variant in ("unmerged", "merged", "merged_fp32"):
        t0 = time.time()
        model, tokenizer = load(run, variant, survival)
        nll = perplexity.doctor_nll(model, tokenizer, conversations, run.cfg.dataset.prompt_format, batch_size,
                                    run.cfg.trainer.max_length)
        stat = intervals.perplexity_of([s for s, _ in nll], [n for _, n in nll])
        asks = [c[: max(i for i, m in enumerate(c) if m["role"] == "user") + 1] for c in conversations[:prompts]]
        ids = [prompt_ids(tokenizer, c, run.cfg.dataset.prompt_format) for c in asks]
        gens = generation.generate(model, tokenizer, ids, batch_size=batch_size, max_new_tokens=max_new_tokens)
        nlls[variant], texts[variant] = stat, [g.token_ids for g in gens]
        entry = {"perplexity": intervals.bootstrap(stat), "tokens_scored": sum(n for _, n in nll),
                 "dtype": str(next(model.parameters()).dtype), "seconds": round(time.time() - t0, 1)}
        if torch.cuda.is_available():
            entry["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
        if variant != "unmerged":
            entry["vs_unmerged"] = intervals.paired_difference(nlls["unmerged"], stat)
            same, first = 0, []
            for a, b in zip(texts["unmerged"], texts[variant]):
                same += a == b
                k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                first.append(k if a != b else None)
            diverged = [k for k in first if k is not None]
            entry["generation"] = {"prompts": len(first), "identical": same,
                                   "mean_first_difference": (sum(diverged) / len(diverged)) if diverged else None}
        out["variants"][variant] = entry
        print(f"{run_dir} {variant}: perplexity {entry['perplexity']['value']:.4f} "
              f"{[round(x, 4) for x in entry['perplexity']['ci95']]}"
              + (f"  vs unmerged {entry['vs_unmerged']['difference']:+.4g} "
                 f"{[round(x, 4) for x in entry['vs_unmerged']['ci95']]}; identical generations "
                 f"{entry['generation']['identical']}/{entry['generation']['prompts']}" if variant != "unmerged" else ""),
              flush=True)
        del model
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    ci = out["variants"]["unmerged"]["perplexity"]["ci95"]
    half = (ci[1] - ci[0]) / 2
    for v in ("merged", "merged_fp32"):
        d = out["variants"][v]["vs_unmerged"]["difference"]
        out["variants"][v]["within_the_perplexity_interval"] = abs(d) < half
    out["perplexity_interval_half_width"] = half
    out["delta_survival_bf16"] = survival
    print(f"{run_dir}: bf16 rounding of W + delta: {survival}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--rows", type=int, default=0, help="first N held-out rows (0: all)")
    p.add_argument("--prompts", type=int, default=32, help="greedy generations compared")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    from qlora_throughput import versions

    record = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "versions": versions(), "runs": []}
    for d in a.run_dirs:
        record["runs"].append(measure(d, a.rows, a.prompts, a.max_new_tokens, a.batch_size))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
