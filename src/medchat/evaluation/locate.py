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


def full_heldout(run_dir: str | Path, artifact: str | None = None) -> tuple[Path, dict] | tuple[None, dict]:
    """(folder, metrics) of the newest full held-out evaluation of the adapter (of `artifact`, when given: an
    exported folder's evaluation), or (None, {}) when there is none."""
    for folder, metrics in reversed(evaluations(run_dir)):
        if metrics.get("limit") or metrics.get("split") != "eval.jsonl" or "adapter" not in metrics["models"]:
            continue
        if artifact is not None and metrics.get("artifact") != artifact:
            continue
        return folder, metrics
    return None, {}
