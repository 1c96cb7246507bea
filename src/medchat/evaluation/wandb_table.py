"""evaluate.py's results into the training run's W&B run, so one dashboard row holds training and evaluation.

The run's id is in RUN/wandb_run_id (written by medchat.tracking when training started); evaluation
resumes that run by id and logs, under the evaluation's own namespace (its folder name under RUN/eval/),
the corpus metrics `eval/<evaluation folder>/<model>/<metric>` and a W&B Table
`eval/<evaluation folder>/predictions` with one row per example: prompt, reference, the base model's answer
(when compare_base=true), the fine-tuned answer and the per-example scores. Two evaluations never write the
same key. Only the run's own full held-out evaluation of its adapter also goes into the run's summary (the
columns runs are compared by); a smoke run (limit=), another dataset's rows, an exported artifact or a
preset base model are logged to the history only. Runs trained without W&B (tracker=none|tensorboard) log
nothing here.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
NAMESPACE = "eval"  # eval/<evaluation folder>/<model>/<metric>: the folder names what was scored (evaluation.plan)


def metric_keys(evaluation: str, models: dict[str, dict]) -> dict[str, float]:
    """metrics.json's {"models": {model: {metric: value}}} -> {"eval/<evaluation>/<model>/<metric>": value},
    numbers only (a metric left unavailable is None and not logged)."""
    return {f"{NAMESPACE}/{evaluation}/{model}/{metric}": value
            for model, values in models.items() for metric, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def table_rows(predictions: list[dict]) -> tuple[list[str], list[list]]:
    """predictions.jsonl rows -> (columns, rows): one column per model's answer and per model's score."""
    models = list(predictions[0]["generation"])
    scores = sorted({k for p in predictions for m in models for k, v in p["scores"][m].items()
                     if isinstance(v, (int, float, bool))})
    answer = {"adapter": "fine-tuned answer", "base": "base answer"}
    columns = ["id", "prompt", "reference", *[answer.get(m, f"{m} answer") for m in models],
               *[f"{m}/{s}" for m in models for s in scores]]
    rows = []
    for p in predictions:
        rows.append([p["id"], p["prompt"], p["reference"], *[p["generation"][m] for m in models],
                     *[p["scores"][m].get(s) for m in models for s in scores]])
    return columns, rows


def log_evaluation(run_dir: Path | None, out_dir: Path, summary: bool = True) -> str | None:
    """Log RUN/eval's outputs into the run's W&B run; -> the W&B run id, or None when there is none."""
    from medchat.runs import wandb_run
    from medchat.tracking import wandb_mode

    found = wandb_run(run_dir)  # the run's id and tracker config, read by medchat.runs
    if found is None:
        return None
    run_id, tracker = found
    import wandb

    predictions = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    mode = wandb_mode(tracker.get("mode", "auto"))
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=tracker.get("project"), entity=tracker.get("entity"), id=run_id,
                     resume="allow", dir=str(run_dir), mode=mode)
    try:
        corpus = metric_keys(out_dir.name, metrics["models"])
        if not summary:  # W&B copies every logged key's last value into the summary unless told not to
            run.define_metric(f"{NAMESPACE}/{out_dir.name}/*", summary="none")
        columns, rows = table_rows(predictions)
        run.log({**corpus, f"{NAMESPACE}/{out_dir.name}/predictions": wandb.Table(columns=columns, data=rows)})
        if summary:
            run.summary.update(corpus)
    finally:
        run.finish()
    log.info("evaluation logged to W&B run %s (%s)", run.id, mode)
    return run.id
