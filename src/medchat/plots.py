"""The sweep report's PNGs (matplotlib, Agg backend: no display needed). Drawing only: what a metric is
called and which way is better come from the caller (medchat.report), so this module imports nothing of
medchat's."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def run_label(row, keys: list[str]) -> str:
    short = [f"{k.rsplit('.', 1)[-1]}={row[k]}" for k in keys]
    return " ".join(short) if short else row["run"]


def loss_curves(curves: dict, frame, keys: list[str], path: Path) -> Path:
    """Train loss (left) and eval loss (right) against the step, one colour per run; failed runs dotted."""
    fig, (ax_train, ax_eval) = plt.subplots(1, 2, figsize=(13, 5), sharex=True)
    colours = plt.get_cmap("tab20" if len(frame) > 10 else "tab10")
    for i, (_, row) in enumerate(frame.iterrows()):
        train, evals, state = curves[row["run"]]
        style = dict(color=colours(i % colours.N), linestyle="-" if state == "done" else ":",
                     label=f"{row['run']}: {run_label(row, keys)}" + ("" if state == "done" else f" ({state})"))
        if train:
            ax_train.plot(*zip(*train), **style)
        if evals:
            ax_eval.plot(*zip(*evals), marker="o", markersize=3, **style)
    for ax, title in ((ax_train, "train loss"), (ax_eval, "eval loss")):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("loss")
    handles, labels = ax_train.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.83, 0.5), fontsize="small", frameon=False)
    fig.suptitle(f"loss curves of {len(frame)} runs (dotted: not finished)")
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def metric_vs_keys(frame, keys: list[str], metrics: list[str], out: Path, label, direction) -> list[Path]:
    """<metric>_vs_<key>.png: every finished run as a dot, the mean +- std per value of the key as a line.
    label(metric) -> axis text; direction(metric) -> -1 lower is better, +1 higher is better."""
    done = frame[frame["status"] == "done"]
    paths = []
    for metric in metrics:
        runs = done[done[metric].notna()]
        if runs.empty:
            continue
        for key in keys:
            values = sorted(runs[key].dropna().unique(), key=lambda v: (isinstance(v, str), v))
            if not values:
                continue
            numeric = _numeric(values)
            pos = {v: (v if numeric else i) for i, v in enumerate(values)}
            fig, ax = plt.subplots(figsize=(6, 4.2))
            ax.scatter([pos[v] for v in runs[key]], runs[metric].astype(float), alpha=0.6, color="tab:blue",
                       label="one run", zorder=3)
            stats = runs.groupby(key)[metric].agg(["mean", "std", "count"]).reindex(values)
            ax.errorbar([pos[v] for v in values], stats["mean"], yerr=stats["std"].fillna(0), color="tab:red",
                        marker="s", capsize=4, label="mean ± std of the runs at each value", zorder=2)
            if numeric and min(values) > 0 and max(values) / min(values) >= 8:
                ax.set_xscale("log")
            if numeric:
                ax.set_xticks(values)
                ax.set_xticklabels([f"{v:g}" for v in values])
                ax.minorticks_off()
            else:
                ax.set_xticks(range(len(values)))
                ax.set_xticklabels([str(v) for v in values])
            better = "lower" if direction(metric) < 0 else "higher"
            ax.set_xlabel(key)
            ax.set_ylabel(f"{label(metric)} ({better} is better)")
            n = int(stats["count"].max()) if not stats["count"].isna().all() else 0
            ax.set_title(f"{label(metric)} vs {key} (up to {n} runs per value)", fontsize="medium")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
            fig.tight_layout()
            path = out / f"{metric}_vs_{key}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths
