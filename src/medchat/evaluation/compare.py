"""Paired differences between two evaluations of the same rows, e.g. a base model and a fine-tuned run scored
by two evaluate.py calls (at different times, or a preset base against the run's adapter).

    python -m medchat.evaluation.compare RUN/eval/heldout-smollm2_135m_instruct RUN/eval/heldout-adapter
    # -> RUN/eval/heldout-adapter/compare-heldout-smollm2_135m_instruct.{json,md}

Both folders' predictions.jsonl must hold the same rows (ids, prompts and references, in order): the
differences are paired row by row, with the same bootstrap as evaluate.py's compare_base=true
(medchat.evaluation.intervals), so the numbers mean the same thing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medchat.evaluation import intervals
from medchat.evaluation.outputs import LABELS, _fmt


def _read(folder: Path, model: str | None) -> tuple[str, list[dict]]:
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    if not rows:
        raise ValueError(f"{folder}/predictions.jsonl is empty")
    models = list(rows[0]["generation"])
    pick = model or ("adapter" if "adapter" in models else models[-1])
    if pick not in models:
        raise ValueError(f"{folder}: no model {pick!r} (it has {', '.join(models)})")
    return pick, rows


def compare(first: str | Path, second: str | Path, first_model: str | None = None,
            second_model: str | None = None) -> dict:
    """{"first", "second", "rows", "models": {label: {metric: {value, ci95}}}, "difference": {metric: ...}}:
    second minus first, paired by row."""
    first, second = Path(first), Path(second)
    m1, rows1 = _read(first, first_model)
    m2, rows2 = _read(second, second_model)
    key = [(r["id"], r["prompt"], r["reference"]) for r in rows1]
    if key != [(r["id"], r["prompt"], r["reference"]) for r in rows2]:
        raise ValueError(f"{first} and {second} did not score the same rows (ids, prompts and references must match "
                         "in order): a paired difference needs the same rows")
    refs = [r["reference"] for r in rows1]
    a = intervals.statistics([r["scores"][m1] for r in rows1], [r["generation"][m1] for r in rows1], refs)
    b = intervals.statistics([r["scores"][m2] for r in rows2], [r["generation"][m2] for r in rows2], refs)
    la, lb = f"{first.name}:{m1}", f"{second.name}:{m2}"
    out = intervals.model_intervals({la: a, lb: b})
    return {"first": str(first), "second": str(second), "rows": len(rows1), "method": out["method"],
            "models": out["models"], "difference": out["differences"][f"{lb} - {la}"]}


def markdown(result: dict) -> str:
    (la, ma), (lb, mb) = result["models"].items()
    lines = [f"# `{lb}` minus `{la}` on the same {result['rows']} rows", "",
             f"95% intervals: {result['method']}; `*`: the difference's interval excludes 0.", "",
             f"| metric | {la} | {lb} | difference |", "|---|---:|---:|---:|"]
    for key in LABELS:
        if key in ma and key in mb:
            d = result["difference"][key]
            cell = lambda x: f"{_fmt(x['value'])} [{_fmt(x['ci95'][0])}, {_fmt(x['ci95'][1])}]"
            lines.append(f"| {LABELS[key]} | {cell(ma[key])} | {cell(mb[key])} | {d['difference']:+.4g} "
                         f"[{d['ci95'][0]:+.4g}, {d['ci95'][1]:+.4g}]{' *' if d['excludes_zero'] else ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first", help="evaluation folder (the baseline)")
    p.add_argument("second", help="evaluation folder of the same rows (the difference is second - first)")
    p.add_argument("--first-model", default=None, help="model label in the first folder (default: adapter, else its last)")
    p.add_argument("--second-model", default=None)
    args = p.parse_args(argv)
    result = compare(args.first, args.second, args.first_model, args.second_model)
    out = Path(args.second) / f"compare-{Path(args.first).name}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
