"""Look before you train: the rendered examples with the trained tokens marked, lengths and truncation.

    python -m medchat.inspect dataset=icliniq model=mistral7b            # 3 examples, histogram, plan
    python -m medchat.inspect --n 5 --html /tmp/masks.html trainer.max_length=512
    python -m medchat.inspect --run-dir runs/RUN                          # a run's own config (+ its plan.json)

Takes the same overrides as train.py and does what training does up to the first forward pass: compose
and validate the config, read and split the data, load the tokenizer and chat template, tokenize with the
loss mask, and stop there, before any weights load (the medchat counterpart of `axolotl preprocess
--debug`). Trained tokens (the doctor's turns, each through its EOS) are green in a terminal, `[[...]]`
when the output is not a terminal, and highlighted in the HTML file (default RUN/inspect.html with
--run-dir, else ./medchat_inspect.html).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path

GREEN, DIM, RESET = "\033[42;30m", "\033[2m", "\033[0m"


def segments(tokenizer, ids: list[int], mask: list[int]) -> list[tuple[str, bool]]:
    """Consecutive tokens with the same mask, decoded together: (text, trained)."""
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            out.append((tokenizer.decode(ids[start:i]), bool(mask[start])))
            start = i
    return out


def render_text(segs, color: bool) -> str:
    if color:
        return "".join(f"{GREEN}{t}{RESET}" if trained else f"{DIM}{t}{RESET}" for t, trained in segs)
    return "".join(f"[[{t}]]" if trained else t for t, trained in segs)


def histogram(lengths: list[int], max_length: int, bins: int = 10, width: int = 40) -> list[str]:
    top = max(max(lengths), max_length)
    step = max(1, math.ceil(top / bins))
    counts = [0] * bins
    for n in lengths:
        counts[min((n - 1) // step, bins - 1)] += 1
    peak = max(counts) or 1
    lines = []
    for b, c in enumerate(counts):
        lo, hi = b * step + 1, (b + 1) * step
        mark = " <- max_length" if lo <= max_length <= hi else ""
        lines.append(f"{lo:6d}-{hi:<6d} {'#' * round(width * c / peak):<{width}} {c}{mark}")
    return lines


def length_stats(tokenized: list[dict], max_length: int) -> dict:
    lengths = [len(t["input_ids"]) for t in tokenized]
    over = [t for t in tokenized if len(t["input_ids"]) > max_length]
    lost = sum(sum(t["assistant_masks"][max_length:]) for t in over)
    trained = sum(sum(t["assistant_masks"]) for t in tokenized)
    return {"rows": len(lengths), "tokens": sum(lengths), "trained_tokens": trained, "min": min(lengths),
            "mean": sum(lengths) / len(lengths), "max": max(lengths), "max_length": max_length,
            "truncated_rows": len(over), "trained_tokens_cut": lost,
            "rows_with_nothing_trained_after_cut": sum(1 not in t["assistant_masks"][:max_length] for t in over)}


def html_page(examples: list[tuple[str, list]], stats: dict, hist: list[str], plan: dict | None) -> str:
    parts = []
    for title, segs in examples:
        body = "".join(f'<span class="t">{html.escape(t)}</span>' if trained else html.escape(t) for t, trained in segs)
        parts.append(f"<h3>{html.escape(title)}</h3><pre>{body}</pre>")
    return ("<!doctype html><meta charset=utf-8><title>medchat inspect</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}pre{white-space:pre-wrap;"
            "background:#f6f6f6;padding:1em;border-radius:6px;color:#555}.t{background:#b7ebc0;color:#000}"
            "</style><h1>medchat inspect</h1><p>Highlighted: tokens the loss is computed on "
            "(assistant turns through EOS). Grey: context only.</p>" + "".join(parts)
            + f"<h2>Token lengths (train)</h2><pre>{html.escape(chr(10).join(hist))}</pre>"
            + f"<pre>{html.escape(json.dumps(stats, indent=2))}</pre>"
            + (f"<h2>Run plan</h2><pre>{html.escape(json.dumps(plan, indent=2))}</pre>" if plan else ""))


def compose(overrides: list[str], config_dir: str | None, run_dir: str | None):
    from hydra import compose as hydra_compose, initialize_config_dir

    from medchat.config import register_configs
    from medchat.rundir import register_resolvers

    if run_dir is not None and not overrides:
        from medchat import runs

        try:
            return runs.read_config(run_dir)
        except FileNotFoundError:  # a run dir without a config yet: compose from conf/ as train.py would
            pass
    conf = Path(config_dir) if config_dir else next(
        (p for p in (Path.cwd() / "conf", Path(__file__).resolve().parents[2] / "conf") if p.is_dir()), None)
    if conf is None:
        raise FileNotFoundError("no conf/ folder here or beside the medchat sources: pass --config-dir")
    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=str(conf.resolve()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def inspect(preview, n: int = 3, color: bool = False, html_path: Path | None = None, out=None) -> dict:
    """Print (and write as HTML) what pipeline.preview found: the first n training rows with their trained
    tokens marked, the length histogram and truncation, and the run plan."""
    from medchat.formatting import tokenize_conversation

    out = out or sys.stdout  # looked up now: a caller (or pytest) may have replaced sys.stdout
    tokenizer, fmt, max_length = preview.tokenizer, preview.prompt_format, preview.max_length
    tokenized = [tokenize_conversation(tokenizer, r["messages"], fmt) for r in preview.split.train]
    examples = []
    for record, tok in list(zip(preview.split.train, tokenized))[:n]:
        title = f"train row {record['row']} (id {record['id']}): {len(tok['input_ids'])} tokens, " \
                f"{sum(tok['assistant_masks'])} trained"
        segs = segments(tokenizer, tok["input_ids"], tok["assistant_masks"])
        examples.append((title, segs))
        print(f"=== {title}\n{render_text(segs, color)}\n", file=out)
    stats = length_stats(tokenized, max_length)
    hist = histogram([len(t["input_ids"]) for t in tokenized], max_length)
    print("=== token lengths of the training rows\n" + "\n".join(hist), file=out)
    print(f"{stats['truncated_rows']} of {stats['rows']} rows are longer than trainer.max_length={max_length} "
          f"(TRL cuts them: {stats['trained_tokens_cut']} trained tokens lost, "
          f"{stats['rows_with_nothing_trained_after_cut']} rows left with nothing to learn)", file=out)
    summary = preview.summary
    print("=== run plan\n" + json.dumps(summary, indent=2, default=str), file=out)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(html_page(examples, stats, hist, summary))
        print(f"HTML: {html_path}", file=out)
    return {"stats": stats, "examples": examples, "plan": summary, "html": html_path}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m medchat.inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3, help="examples to print (default 3)")
    p.add_argument("--html", type=Path, help="where to write the HTML page")
    p.add_argument("--run-dir", help="a run dir: its config.yaml (unless overrides are given) and plan.json")
    p.add_argument("--config-dir", help="the conf/ folder (default: ./conf, else the one beside the sources)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    a = p.parse_args(argv)
    from medchat.hydra_apps import quiet_libraries

    quiet_libraries(verbose=False)
    cfg = compose(a.overrides, a.config_dir, a.run_dir)
    html_path = a.html or (Path(a.run_dir) / "inspect.html" if a.run_dir else Path("medchat_inspect.html"))
    color = a.color == "always" or (a.color == "auto" and sys.stdout.isatty())
    try:
        from medchat.pipeline import preview

        inspect(preview(cfg, a.run_dir), n=a.n, color=color, html_path=html_path)
    except ValueError as e:  # ConfigError, DataError, TemplateError: bad input, named
        print(f"medchat.inspect: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
