"""Which of a run's evaluations a summary should quote: the full held-out one, never a `limit` smoke run.

Each evaluate.py call writes RUN/eval/<what it scored>/ (evaluation.plan.eval_name). The model card and the
sweep report read `full_heldout()`: an evaluation of the run's own held-out rows with no limit that includes
the adapter, the newest of them when there are several.
"""

from __future__ import annotations

import json
from pathlib import Path


def evaluations(run_dir: str | Path) -> list[tuple[Path, dict]]:
    """(folder, metrics.json) of every generation evaluation under RUN/eval, oldest first."""
    found = []
    for path in sorted(Path(run_dir).glob("eval/*/metrics.json"), key=lambda p: p.stat().st_mtime):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "models" in metrics and "rows" in metrics:
            found.append((path.parent, metrics))
    return found


def _scored(metrics: dict) -> str | None:
    """The folder of weights an evaluation's "adapter" was: RUN/adapter or an exported folder."""
    return (metrics.get("artifact") or {}).get("path")


def full_heldout(run_dir: str | Path, artifact: str | Path | None = None) -> tuple[Path, dict] | tuple[None, dict]:
    """(folder, metrics) of the newest full held-out evaluation of the run's adapter, or, with `artifact`,
    of that exported folder; (None, {}) when there is none."""
    want = str(Path(artifact).resolve()) if artifact is not None else None
    for folder, metrics in reversed(evaluations(run_dir)):
        if metrics.get("limit") or metrics.get("split") != "eval.jsonl" or "adapter" not in metrics["models"]:
            continue
        scored = _scored(metrics)
        if want is not None:
            if scored is None or str(Path(scored).resolve()) != want:
                continue
        elif scored is not None and Path(scored).name != "adapter" and "export" in Path(scored).parts:
            continue  # an exported folder's evaluation is quoted only for that folder
        return folder, metrics
    return None, {}
