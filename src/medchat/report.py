"""Summarise a sweep from its run dirs' files alone (no W&B server): a CSV, ablation tables and plots.

    python -m medchat.report SWEEP_DIR                  # writes SWEEP_DIR/report/
    python -m medchat.report SWEEP_DIR --out somewhere

Writes:
    runs.csv        one row per run dir: status, stage, overrides and one column per swept key, final train loss
                    (the last logged one), eval loss after training (eval_loss; eval_loss_before too),
                    generation metrics of the full held-out evaluate.py run, RUN/eval/heldout-*/ (gen.<name>),
                    train runtime and tokens/s of the last training session, peak GPU memory, trainable
                    (LoRA) parameters, and for stage=dpo|orpo the held-out reward accuracy and margin
    ablation.md     one row per stage and setting (the swept keys other than the seeds): mean +- sample std over the
    ablation.tex    finished seeds, n = finished/all runs; the best mean of each metric in bold
    *.png           loss_curves.png (every run; failed runs dotted) and <metric>_vs_<key>.png for each
                    metric and swept key (every finished run as a dot, mean +- std as a line)

Where the numbers come from: RUN/metrics.json (medchat.pipeline), RUN/eval/*/metrics.json (evaluate.py),
the loss history in the last checkpoint's trainer_state.json (W&B's offline history when a run kept no
checkpoint), RUN/status and RUN/job.json. Failed and unfinished runs are listed, never averaged.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from medchat.sweeps.state import SEED_KEYS, identity, override_key
from medchat.evaluation import locate

# metric column -> (label, direction: -1 lower is better, +1 higher is better)
METRICS = {
    "eval_loss": ("eval loss", -1),
    "train_loss": ("final train loss", -1),
    "perplexity": ("eval perplexity", -1),
    "tokens_per_s": ("train tokens/s", +1),
    "trainable_parameters": ("trainable parameters", -1),
    "peak_memory_gib": ("peak memory GiB", -1),
    # stage=dpo|orpo: on the held-out pairs, after training (medchat.stages)
    "reward_accuracy": ("held-out reward accuracy", +1),
    "reward_margin": ("held-out reward margin", +1),
}
LOWER_IS_BETTER_GEN = {"perplexity"}


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def run_dirs(sweep_dir: Path) -> list[Path]:
    found = set()
    for depth in ("*", "*/*", "*/*/*"):
        for marker in ("job.json", "status", ".hydra/overrides.yaml"):
            for p in sweep_dir.glob(f"{depth}/{marker}"):
                run = p.parent.parent if marker.startswith(".hydra") else p.parent
                if "report" not in run.relative_to(sweep_dir).parts:
                    found.add(run)
    return sorted(found, key=lambda p: [int(s) if s.isdigit() else s for s in p.relative_to(sweep_dir).parts])


def history(run: Path) -> tuple[list[tuple], list[tuple]]:
    """(step, train loss) and (step, eval loss) points: the last checkpoint's log history, which spans every
    session of a resumed run; else the offline W&B run's history."""
    checkpoints = sorted(run.glob("checkpoints/checkpoint-*/trainer_state.json"),
                         key=lambda p: int(p.parent.name.rsplit("-", 1)[1]))
    if checkpoints:
        log = json.loads(checkpoints[-1].read_text())["log_history"]
        train = [(h["step"], h["loss"]) for h in log if "loss" in h]
        evals = [(h["step"], h["eval_loss"]) for h in log if "eval_loss" in h]
        return train, evals
    if list(run.glob("wandb/*run-*")):
        from medchat.tracking import wandb_history

        try:
            rows = wandb_history(run)
        except Exception:  # an unreadable offline run only costs the curve
            return [], []
        train = [(r.get("train/global_step", i), r["train/loss"]) for i, r in enumerate(rows) if "train/loss" in r]
        evals = [(r.get("train/global_step", i), r["eval/loss"]) for i, r in enumerate(rows) if "eval/loss" in r]
        return train, evals
    return [], []


def overrides_of(run: Path) -> list[str]:
    job = _read_json(run / "job.json")
    if job is not None:
        return job["overrides"]
    path = run / ".hydra" / "overrides.yaml"
    if path.exists():
        from omegaconf import OmegaConf

        return identity(OmegaConf.to_container(OmegaConf.load(path)))
    return []


def collect(sweep_dir: Path) -> tuple[list[dict], dict, list[str]]:
    """One record per run dir, each run's loss history (by run name), and the override keys seen."""
    rows, curves, keys = [], {}, []
    for run in run_dirs(sweep_dir):
        name = str(run.relative_to(sweep_dir))
        status = _read_json(run / "status") or {"state": "not started"}
        overrides = overrides_of(run)
        metrics = _read_json(run / "metrics.json") or {}
        train, evals = history(run)
        before = (metrics or _read_json(run / "metrics_before.json") or {}).get("eval_loss_before")
        if before is not None:
            evals = [(0, before), *evals]  # the untrained adapter's eval loss
        curves[name] = (train, evals, status["state"])
        job = _read_json(run / "job.json") or {}
        keys += [override_key(o) for o in overrides if "=" in o and override_key(o) not in keys]
        row = {
            "run": name,
            "status": status["state"],
            "reason": status.get("reason", "") if status["state"] != "done" else "",
            "overrides": " ".join(overrides),
            **{override_key(o): _value(o.split("=", 1)[1]) for o in overrides if "=" in o},
            "stage": metrics.get("stage") or _stage_of(run),
            "eval_loss": metrics.get("eval_loss_after"),
            "eval_loss_before": metrics.get("eval_loss_before"),
            "train_loss": train[-1][1] if train else metrics.get("train_loss"),
            "train_loss_mean": metrics.get("train_loss"),  # the trainer's average over all steps
            "perplexity": metrics.get("perplexity_after"),
            "global_step": metrics.get("global_step"),
            "best_step": metrics.get("best_step"),  # trainer.load_best_model_at_end / early stopping
            "stopped_early": metrics.get("stopped_early"),
            "train_runtime_s": metrics.get("train_runtime_s"),
            "tokens_per_s": metrics.get("train_tokens_per_second"),
            "peak_memory_gib": metrics.get("peak_memory_gib"),
            "trainable_parameters": metrics.get("trainable_parameters"),
            "reward_accuracy": metrics.get("reward_accuracy_after"),
            "reward_margin": metrics.get("reward_margin_after"),
            "attempts": len(job.get("attempts", [])) or None,
            "wall_s": sum(a.get("seconds", 0) for a in job.get("attempts", [])) or None,
        }
        evaluation = locate.full_heldout(run)[1]
        if evaluation:
            for key, value in evaluation.get("models", {}).get("adapter", {}).items():
                if isinstance(value, (int, float)):
                    row[f"gen.{key}"] = value
        rows.append(row)
    return rows, curves, keys


def _stage_of(run: Path) -> str:
    """sft | dpo | orpo from the run's config when metrics.json names none (runs from before stages: sft)."""
    from omegaconf import OmegaConf

    from medchat import runs

    try:
        return OmegaConf.select(runs.read_config(run, on_schema=False), "stage.name", default="sft")
    except FileNotFoundError:
        return "sft"


def swept_keys(frame, keys: list[str]) -> list[str]:
    """Override keys whose value differs between runs (seeds included)."""
    return [k for k in keys if frame[k].astype(str).nunique() > 1]


def metric_columns(frame) -> list[str]:
    cols = [c for c in METRICS if c in frame and frame[c].notna().any()]
    return cols + sorted(c for c in frame.columns if c.startswith("gen.") and frame[c].notna().any())


def direction(metric: str) -> int:
    if metric in METRICS:
        return METRICS[metric][1]
    return -1 if metric.split(".", 1)[1] in LOWER_IS_BETTER_GEN else +1


def label(metric: str) -> str:
    return METRICS[metric][0] if metric in METRICS else metric


def ablation(frame, keys: list[str]):
    """Per stage (when any run is not sft) and setting (swept keys without seeds): n and mean/std of each metric over the finished runs."""
    import pandas as pd

    settings = [k for k in swept_keys(frame, keys) if k not in SEED_KEYS and k != "stage"]
    if "stage" in frame and (frame["stage"] != "sft").any():  # SFT-only sweeps keep their tables as they were
        settings = ["stage", *settings]
    metrics = metric_columns(frame)
    groups = []
    keyed = frame.assign(_key=frame[settings].astype(str).agg("|".join, axis=1) if settings else "all")
    done_keyed = keyed[keyed["status"] == "done"]
    for key, part in keyed.groupby("_key", sort=False):
        finished = done_keyed[done_keyed["_key"] == key]
        record = {k: part[k].iloc[0] for k in settings}
        record["n"] = f"{len(finished)}/{len(part)}"
        for m in metrics:
            values = finished[m].dropna().astype(float)
            record[(m, "mean")] = values.mean() if len(values) else math.nan
            record[(m, "std")] = values.std(ddof=1) if len(values) > 1 else math.nan
        groups.append(record)
    table = pd.DataFrame(groups)
    if settings and len(table):
        table = table.sort_values(settings, key=lambda s: s.map(lambda v: (isinstance(v, str), v)))
    return table, settings, metrics


def _cell(mean: float, std: float) -> str:
    """4 significant digits for the mean, the std to the same decimal place (6.966 ± 0.020, 1060 ± 21)."""
    if math.isnan(mean):
        return "–"
    digits = 3 - math.floor(math.log10(abs(mean))) if mean else 3
    digits = min(max(digits, 0), 6)
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _best_rows(table, metric: str) -> set:
    means = table[(metric, "mean")]
    if means.notna().sum() < 2:
        return set()
    best = means.min() if direction(metric) < 0 else means.max()
    return set(table.index[means == best])


def markdown(table, settings, metrics) -> str:
    head = [*settings, "n", *(f"{label(m)} {'↓' if direction(m) < 0 else '↑'}" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {m: _best_rows(table, m) for m in metrics}
    for idx, row in table.iterrows():
        cells = [str(row[k]) for k in settings] + [row["n"]]
        for m in metrics:
            text = _cell(row[(m, "mean")], row[(m, "std")])
            cells.append(f"**{text}**" if idx in best[m] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    return "".join({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$"}.get(c, c) for c in str(text))


def latex(table, settings, metrics) -> str:
    arrows = {-1: r"$\downarrow$", 1: r"$\uparrow$"}
    head = [*(_tex(k) for k in settings), "$n$", *(f"{_tex(label(m))} {arrows[direction(m)]}" for m in metrics)]
    best = {m: _best_rows(table, m) for m in metrics}
    lines = [r"\begin{tabular}{" + "l" * (len(settings) + 1) + "r" * len(metrics) + "}", r"\toprule",
             " & ".join(head) + r" \\", r"\midrule"]
    for idx, row in table.iterrows():
        cells = [_tex(row[k]) for k in settings] + [row["n"]]
        for m in metrics:
            text = _cell(row[(m, "mean")], row[(m, "std")]).replace("±", r"$\pm$").replace("–", "--")
            cells.append(rf"\textbf{{{text}}}" if idx in best[m] else text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def build(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    import pandas as pd

    from medchat import plots

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory")
    rows, curves, keys = collect(sweep_dir)
    if not rows:
        raise FileNotFoundError(f"no run dirs (with job.json, status or .hydra/overrides.yaml) under {sweep_dir}")
    out = Path(out) if out is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "runs.csv", index=False)
    table, settings, metrics = ablation(frame, keys)
    swept = swept_keys(frame, keys)
    note = (f"{len(frame)} runs in {sweep_dir}: "
            + ", ".join(f"{n} {s}" for s, n in frame["status"].value_counts().items())
            + ". Mean ± sample std over finished runs; n = finished/all; best mean in bold.\n\n")
    (out / "ablation.md").write_text(note + markdown(table, settings, metrics))
    (out / "ablation.tex").write_text("% " + note.strip().replace("±", "+-") + "\n" + latex(table, settings, metrics))
    pngs = [plots.loss_curves(curves, frame, swept, out / "loss_curves.png")]
    pngs += plots.metric_vs_keys(frame, swept, metrics, out, label, direction)
    print(note.strip())
    print(markdown(table, settings, metrics))
    print(f"wrote {out}: runs.csv, ablation.md, ablation.tex, {len(pngs)} plots")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir (hydra.sweep.dir) holding run dirs")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default SWEEP_DIR/report)")
    args = parser.parse_args(argv)
    build(args.sweep_dir, args.out)


if __name__ == "__main__":
    main()
