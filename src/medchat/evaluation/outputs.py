"""Evaluation outputs: predictions.jsonl (one row per example), metrics.json and a Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from medchat.atomic import write_json

# metric key -> how summary.md names it (and the scale it is on)
LABELS = {
    "bleu": "BLEU (sacrebleu corpus, 0-100)",
    "rouge1": "ROUGE-1 F1 (mean)",
    "rouge2": "ROUGE-2 F1 (mean)",
    "rougeL": "ROUGE-L F1 (mean)",
    "meteor": "METEOR (nltk, mean)",
    "bertscore_f1": "BERTScore F1 (mean)",
    "perplexity": "perplexity of the reference answers",
    "mean_answer_words": "mean answer length (words)",
    "eos_rate": "answers ending with EOS",
    "mean_new_tokens": "mean new tokens",
    "generated_tokens_per_second": "generation speed (tokens/s)",
}


def _json(path: Path, obj) -> None:
    write_json(path, obj)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def _clip(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def metrics_table(models: dict[str, dict], keys=tuple(LABELS)) -> str:
    labels = list(models)
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for key in keys:
        if any(key in models[m] for m in labels):
            lines.append(f"| {LABELS.get(key, key)} | " + " | ".join(_fmt(models[m].get(key)) for m in labels) + " |")
    return "\n".join(lines)


def interval_table(metrics: dict) -> str:
    """Each metric per model as value [95% interval], and each paired difference with its interval; a
    difference whose interval excludes 0 is marked with *."""
    iv = metrics.get("intervals") or {}
    models = metrics["models"]
    labels = list(models)
    diffs = iv.get("differences", {})
    head = "| metric | " + " | ".join(labels + list(diffs)) + " |"
    lines = [head, "|---|" + "---:|" * (len(labels) + len(diffs))]
    for key in LABELS:
        if not any(key in models[m] for m in labels):
            continue
        cells = []
        for m in labels:
            b = iv.get("models", {}).get(m, {}).get(key)
            cells.append(f"{_fmt(b['value'])} [{_fmt(b['ci95'][0])}, {_fmt(b['ci95'][1])}]" if b
                         else _fmt(models[m].get(key)))
        for d in diffs.values():
            x = d.get(key)
            cells.append(f"{x['difference']:+.4g} [{x['ci95'][0]:+.4g}, {x['ci95'][1]:+.4g}]"
                         + (" *" if x["excludes_zero"] else "") if x else "")
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_generation_outputs(plan, rows: list[dict], results: dict, settings: dict, command: list[str],
                             seconds: float, config: dict, source: str = "eval.jsonl", limit: int | None = None,
                             intervals: dict | None = None, artifact: dict | None = None) -> None:
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    labels = list(results)
    first = results[labels[0]][3]
    with open(out / "predictions.jsonl", "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({
                "id": row["id"],
                "row": row["row"],
                "prompt": first["prompts"][i],
                "reference": first["references"][i],
                "generation": {m: results[m][1][i] for m in labels},
                "scores": {m: results[m][2][i] for m in labels},
            }, ensure_ascii=False) + "\n")
    unavailable = {}
    for m in labels:
        unavailable.update(results[m][3]["unavailable"])
    ref_words = [len(r.split()) for r in first["references"]]
    metrics = {
        "rows": len(rows),
        "split": source,  # eval.jsonl: the run's held-out rows; else the file the rows came from
        "limit": limit,  # set: a smoke run on the first rows only (summaries never quote it)
        "artifact": artifact,  # which weights "adapter" is: the run's adapter or an exported folder
        "run_dir": str(plan.run_dir) if plan.run_dir else None,
        "generation": settings,
        "models": {m: results[m][0] for m in labels},
        "intervals": intervals or {},
        "unavailable": unavailable,
        "reference_mean_words": sum(ref_words) / len(ref_words),
        "bleu_signature": first.get("bleu_signature"),
        "bertscore_encoder": first.get("bertscore_encoder"),
        **perplexity_scope(rows, results),
        "seconds": seconds,
        "command": command,
    }
    _json(out / "metrics.json", metrics)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (out / "summary.md").write_text(summary(metrics, rows, results))


def perplexity_scope(rows: list[dict], results: dict) -> dict:
    """What the reference perplexity scored: its definition (the training run's metrics.json states the same one),
    the doctor turns and tokens counted. {} when perplexity was not scored."""
    from medchat.evaluation.perplexity import PERPLEXITY_DEFINITION

    first = next(iter(results.values()))[2]  # per-row scores of the first model (every model scores the same tokens)
    if not first or "nll_tokens" not in first[0]:
        return {}
    turns = [sum(m["role"] == "assistant" for m in r["messages"]) for r in rows]
    return {"perplexity_definition": PERPLEXITY_DEFINITION,
            "perplexity_scored": {"rows": len(rows), "doctor_turns": sum(turns),
                                  "multi_turn_rows": sum(t > 1 for t in turns),
                                  "doctor_tokens": sum(int(x["nll_tokens"]) for x in first)}}


def _perplexity_note(metrics: dict) -> str:
    scope = metrics.get("perplexity_scored")
    if not scope:
        return ""
    multi = (f"; {scope['multi_turn_rows']} rows are multi-turn, and their earlier doctor turns are scored too"
             if scope["multi_turn_rows"] else "")
    return (f"Perplexity: {metrics['perplexity_definition']} (the definition of the training run's held-out "
            f"perplexity in its metrics.json). Here {scope['doctor_tokens']} doctor tokens in {scope['doctor_turns']} "
            f"doctor turns of {scope['rows']} rows{multi}. ")


def summary(metrics: dict, rows: list[dict], results: dict) -> str:
    s = metrics["generation"]
    decoding = (f"sampled (temperature {s['temperature']}, top_p {s['top_p']}, top_k {s.get('top_k', 0)} (0: off), "
                f"seed {s['seed']})"
                if s["do_sample"] else "greedy")
    where = f"`{metrics['run_dir']}`" if metrics["run_dir"] else "the given rows"
    if metrics["split"] == "eval.jsonl":
        rows_text = (f"{metrics['rows']} held-out rows from `eval.jsonl` (checked against the run's split.json: none "
                     "was trained on)")
    else:
        rows_text = (f"{metrics['rows']} rows from `{metrics['split']}`"
                     + (" (none is a training row of the run: checked by hash against its split.json)"
                        if metrics["run_dir"] else ""))
    if metrics.get("limit"):
        rows_text += f"; **a smoke run: only the first {metrics['limit']} rows**"
    adapter = ("the adapter merged into the base (its quantized weights dequantized first; each weight + delta "
               "rounded once to the model dtype, which in bf16 drops deltas below half a step: merge=false scores "
               "the trained function exactly)" if s["merge"]
               else f"the adapter unmerged on the {s['quant']} base")
    if not metrics.get("artifact"):  # a preset base model: there is no adapter
        adapter = "the base model alone, no adapter"
    elif metrics["artifact"]["kind"].startswith("exported"):
        adapter = f"`adapter` is the {metrics['artifact']['kind']} `{metrics['artifact']['path']}`"
    text = [
        f"# Evaluation of {where}",
        "",
        f"{rows_text}. Each prompt is the conversation up to its last doctor turn, rendered with the run's "
        f"`{s['prompt_format']}` format; the reference is that doctor turn. Decoding: {decoding}, at most "
        f"{s['max_new_tokens']} new tokens, batches of {s['batch_size']} (left-padded); model: {adapter}. Base "
        f"weights: `{s['base_model']}`. Reference answers average {metrics['reference_mean_words']:.1f} words.",
        "",
        interval_table(metrics) if metrics.get("intervals") else metrics_table(metrics["models"]),
        "",
        "Brackets: 95% percentile-bootstrap interval over rows (" + (metrics.get("intervals") or {}).get("method", "")
        + ")" + ("; `adapter - base` is the paired difference, `*` where its interval excludes 0."
                 if (metrics.get("intervals") or {}).get("differences") else ".")
        if metrics.get("intervals") else "",
        _perplexity_note(metrics) + "All other numbers score the generated answers against the references.",
        " ".join(filter(None, [
            f"BLEU signature: `{metrics['bleu_signature']}`." if metrics.get("bleu_signature") else "",
            f"BERTScore encoder: {metrics['bertscore_encoder']} (not rescaled)." if metrics.get("bertscore_encoder")
            else ""])),
    ]
    for name, reason in metrics["unavailable"].items():
        text.append(f"**{name} unavailable**: {reason}")
    text += ["", f"Command: `{' '.join(metrics['command'])}` ({metrics['seconds']:.0f} s)", "", "## First examples", ""]
    labels = list(results)
    for i, row in enumerate(rows[:3]):
        question = next(m["content"] for m in reversed(row["messages"][:-1]) if m["role"] == "user")
        text += [f"**Row {row['row']}** (id {row['id']}). Patient: {_clip(question)}", "",
                 f"- reference: {_clip(results[labels[0]][3]['references'][i])}"]
        text += [f"- {m}: {_clip(results[m][1][i]) or '(empty)'}" for m in labels]
        text.append("")
    return "\n".join(text)
