"""Medical multiple-choice benchmarks scored by option log-likelihood (no generation, no answer parsing).

For each item the model reads the question (and its options, for lettered benchmarks) and each option's
label is scored as a continuation: the sum of log p(label tokens | prompt). Two choices are reported, as
lm-evaluation-harness defines them (lm_eval/api/task.py, multiple_choice):
  acc       the option with the highest log-likelihood
  acc_norm  the option with the highest log-likelihood divided by the option's length in characters
            (bytes, for these ASCII labels), so long options are not penalised for having more tokens
Ties go to the first option (numpy argmax). Each accuracy comes with a 95% Wilson score interval, so
small benchmarks say how little they can tell apart. Prompts (`mcq.prompt_format`):
  plain: lm-eval's zero-shot prompt for the benchmark (see mcq_data), tokenized as lm-eval's HF model does
         (context and context + " " + label encoded, the continuation is what follows the context's tokens)
  chat:  the same question as a user turn in the model's chat template, scored on "A" ... as the reply
         (not comparable with lm-eval's numbers; for chat models that ignore bare prompts)

    python evaluate.py run_dir=runs/RUN task=mcq mcq.benchmarks=[../shared/data/mcq_eval]   # RUN/eval/mcq-adapter/
    python evaluate.py model=qwen2_0_5b_instruct task=mcq mcq.benchmarks=[medqa] out_dir=runs/qwen-mcq
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from medchat.evaluation.mcq_data import Item, benchmarks
from medchat.evaluation.plan import Plan, load_models, load_tokenizer
from medchat.formatting import prompt_ids

Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound at 0 and 1 and for small n, unlike p +- z*se)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact at the ends (the formula leaves rounding dust there)
    return (0.0 if correct == 0 else max(0.0, center - half), 1.0 if correct == n else min(1.0, center + half))


def prompt_text(item: Item) -> str:
    if item.prompt:
        return item.prompt
    if item.lettered:
        options = "\n".join(f"{label}. {text}" for label, text in zip(item.labels, item.options))
        return f"Question: {item.question}\n{options}\nAnswer:"
    return f"{item.question}\nAnswer (yes, no or maybe):"


def encode(tokenizer, item: Item, prompt_format: str) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) for each option of the item."""
    text = prompt_text(item)
    if prompt_format == "chat":
        instruction = "Reply with the option's letter only." if item.lettered else "Reply with yes, no or maybe only."
        context = prompt_ids(tokenizer, [{"role": "user", "content": f"{text.rsplit(chr(10), 1)[0]}\n{instruction}"}],
                             "chat_template")
        return [(context, tokenizer(label, add_special_tokens=False)["input_ids"]) for label in item.labels]
    # Exactly lm-eval's HFLM._encode_pair: trailing spaces of the context move into the continuation, the
    # whole text is encoded and the continuation is whatever follows the context's token count (so the
    # label's tokens are the ones the model reads after the prompt; SentencePiece merges spaces).
    stripped = text.rstrip()
    context = tokenizer.encode(stripped)
    pairs = []
    for label in item.labels:
        whole = tokenizer.encode(stripped + text[len(stripped):] + " " + label)
        pairs.append((context, whole[len(context):]))
    return pairs


@torch.no_grad()
def continuation_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 16) -> list[float]:
    """sum over the continuation's tokens of log p(token | everything before it), one float per pair.

    Options of one item share their context; when continuations are one token each (" A", " yes"), one
    forward pass of the context scores them all, which is most of the work saved on long prompts."""
    # requests: (sequence, first scored position, [(pair index, continuation tokens)])
    shared: dict[tuple, list[int]] = {}
    requests = []
    for i, (context, cont) in enumerate(pairs):
        if len(cont) == 1:
            shared.setdefault(tuple(context), []).append(i)
        else:
            requests.append((context + cont, len(context) - 1, [(i, cont)]))
    requests += [(list(c), len(c) - 1, [(i, pairs[i][1]) for i in idx]) for c, idx in shared.items()]
    requests.sort(key=lambda r: -len(r[0]))
    device = next(model.parameters()).device
    out = [0.0] * len(pairs)
    for b in range(0, len(requests), batch_size):
        batch = requests[b : b + batch_size]
        width = max(len(seq) for seq, _, _ in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (seq, _, _) in enumerate(batch):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        for r, (_, first, targets) in enumerate(batch):
            for i, cont in targets:  # position first + k predicts the continuation's token k
                rows = torch.log_softmax(logits[r, first : first + len(cont)].float(), dim=-1)
                out[i] = rows.gather(1, torch.tensor(cont, device=device)[:, None]).sum().item()
    return out


def score_items(model, tokenizer, items: list[Item], prompt_format: str, batch_size: int) -> list[dict]:
    pairs, owners = [], []
    for k, item in enumerate(items):
        for pair in encode(tokenizer, item, prompt_format):
            pairs.append(pair)
            owners.append(k)
    was_training = model.training
    model.eval()
    try:
        logprobs = continuation_logprobs(model, pairs, tokenizer.pad_token_id, batch_size)
    finally:
        model.train(was_training)
    per_item: list[list[float]] = [[] for _ in items]
    for k, lp in zip(owners, logprobs):
        per_item[k].append(lp)
    results = []
    for item, lps in zip(items, per_item):
        choice, choice_norm = choices(lps, item.labels)
        results.append({"id": item.id, "gold": item.labels[item.answer], "choice": item.labels[choice],
                        "correct": choice == item.answer, "choice_norm": item.labels[choice_norm],
                        "correct_norm": choice_norm == item.answer, "logprobs": dict(zip(item.labels, lps))})
    return results


def choices(logprobs: list[float], labels: list[str]) -> tuple[int, int]:
    """(acc's choice, acc_norm's choice): argmax of the log-likelihood, and of it over the label's length."""
    def first_max(values):  # numpy's argmax: the first of equal values
        return max(range(len(values)), key=lambda i: (values[i], -i))
    return first_max(logprobs), first_max([lp / len(label) for lp, label in zip(logprobs, labels)])


def accuracy(results: list[dict]) -> dict:
    """acc and acc_norm, each with its 95% Wilson interval."""
    n = len(results)
    out = {"items": n}
    for key, field_ in (("acc", "correct"), ("acc_norm", "correct_norm")):
        correct = sum(r[field_] for r in results)
        out[key] = {"value": correct / n, "correct": correct, "ci95": list(wilson_interval(correct, n))}
    return out


def weights(plan: Plan, merge: bool) -> dict[str, str]:
    """What each scored model's weights were, in words (metrics.json's "weights", summary.md's "Weights" lines).

    quant=none merge=false is the base unquantized with the adapter unmerged: what lm-eval's
    `--model_args pretrained=BASE,peft=RUN/adapter` loads. A QLoRA run's default (its own quantization,
    merge=true) is the quantized base dequantized with the adapter merged: the function the run trained."""
    mode, dtype = plan.quant_cfg.mode, plan.model.dtype
    if mode == "none":
        base = f"{plan.model_path} unquantized, {dtype}"
    else:
        base = f"{plan.model_path} in {mode}" + (f", dequantized to {dtype}" if merge else f" ({dtype} compute)")
    out = {"base": base}
    if plan.merged is not None:
        out["adapter"] = f"{plan.merged}, the exported merged model loaded as saved"
    elif plan.adapter is not None:
        out["adapter"] = f"{base} + adapter {plan.adapter} " + ("merged" if merge else "unmerged")
    return out


def run_mcq(cfg, plan: Plan) -> Path:
    suites = benchmarks(list(cfg.mcq.benchmarks))  # every file is read and checked before the model loads
    limit = cfg.mcq.limit or cfg.limit  # the top-level limit too (it was ignored for task=mcq)
    if limit:
        suites = [(name, items[:limit]) for name, items in suites]
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(plan)
    scored: dict[str, dict[str, list[dict]]] = {name: {} for name, _ in suites}
    for label, model in load_models(plan, cfg.merge, cfg.compare_base):
        for name, items in suites:
            scored[name][label] = score_items(model, tokenizer, items, cfg.mcq.prompt_format, cfg.mcq.batch_size)
    metrics = {"prompt_format": cfg.mcq.prompt_format,
               "scoring": "acc: argmax of each option's summed log-likelihood; acc_norm: of it over the option's "
                          "length in characters (lm-evaluation-harness's definitions)",
               "run_dir": str(plan.run_dir) if plan.run_dir else None, "base_model": plan.model_path,
               "merge": cfg.merge, "quant": plan.quant_cfg.mode, "weights": weights(plan, cfg.merge), "limit": limit,
               "command": [sys.executable, *sys.argv], "benchmarks": {}}
    for name, items in suites:
        models = scored[name]
        metrics["benchmarks"][name] = {"items": len(items), "chance": 1 / len(items[0].labels),
                                       "models": {m: accuracy(r) for m, r in models.items()}}
        with open(out / f"{name}.jsonl", "w") as f:
            for k, item in enumerate(items):
                f.write(json.dumps({"id": item.id, "gold": item.labels[item.answer],
                                    "choices": {m: {key: r[k][key] for key in ("choice", "correct", "choice_norm",
                                                                               "correct_norm", "logprobs")}
                                                for m, r in models.items()}}) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "summary.md").write_text(summary(metrics))
    return out


def summary(metrics: dict) -> str:
    names = list(metrics["benchmarks"])
    labels = list(metrics["benchmarks"][names[0]]["models"])
    fmt = "lm-evaluation-harness's zero-shot prompts" if metrics["prompt_format"] == "plain" else "chat-template prompts"
    lines = ["# Medical multiple-choice benchmarks", "",
             f"Scored by option log-likelihood ({fmt}); acc and acc_norm (length-normalised, as lm-eval defines "
             "it), each with its 95% Wilson interval. Per-item choices and log-likelihoods are in "
             "`<benchmark>.jsonl`.", "",
             "| benchmark | items | chance | " + " | ".join(f"{m} acc | {m} acc_norm" for m in labels) + " |",
             "|---|---:|---:|" + "---:|---:|" * len(labels)]
    for name in names:
        b = metrics["benchmarks"][name]
        cells = [f"{m[k]['value']:.3f} [{m[k]['ci95'][0]:.3f}, {m[k]['ci95'][1]:.3f}]"
                 for m in b["models"].values() for k in ("acc", "acc_norm")]
        lines.append(f"| {name} | {b['items']} | {b['chance']:.3f} | " + " | ".join(cells) + " |")
    lines += [""] + [f"Weights, {m}: {w}." for m, w in metrics.get("weights", {}).items() if m in labels]
    lines += ["", f"Command: `{' '.join(metrics['command'])}`", ""]
    return "\n".join(lines)
