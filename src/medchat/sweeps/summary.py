"""The end of a sweep: one status line per job, and SWEEP_DIR/sweep_status.json with the same."""

from __future__ import annotations

import json
from pathlib import Path


def _line(job) -> dict:
    status = job.status or {}
    return {
        "num": job.num,
        "run_dir": str(job.run_dir),
        "state": status.get("state", "not run"),
        "action": job.action,  # fresh | resume | skip (skip: already done before this invocation)
        "seconds": round(job.seconds, 1),
        "overrides": job.identity,
        **({"reason": status["reason"]} if status.get("state") != "done" and status.get("reason") else {}),
    }


def save_status(sweep_dir: Path, jobs) -> None:
    """Merge this batch's jobs into SWEEP_DIR/sweep_status.json (a sweeper may launch several batches)."""
    path = Path(sweep_dir) / "sweep_status.json"
    old = json.loads(path.read_text()) if path.exists() else {"jobs": []}
    by_dir = {j["run_dir"]: j for j in old["jobs"]}
    by_dir.update({str(j.run_dir): _line(j) for j in jobs})
    lines = sorted(by_dir.values(), key=lambda j: j["num"])
    path.write_text(json.dumps({"jobs": lines}, indent=2) + "\n")


def _varying(lines: list[dict]) -> set[str]:
    """The overrides that tell this batch's jobs apart (all of them for a single job)."""
    if len(lines) < 2:
        return {o for line in lines for o in line["overrides"]}
    common = set.intersection(*(set(line["overrides"]) for line in lines))
    return {o for line in lines for o in line["overrides"]} - common


def print_status(sweep_dir: Path, jobs) -> None:
    lines = [_line(j) for j in jobs]
    shown = _varying(lines)
    counts = {}
    for line in lines:
        counts[line["state"]] = counts.get(line["state"], 0) + 1
    skipped = sum(line["action"] == "skip" and line["state"] == "done" for line in lines)
    print(f"\nsweep {sweep_dir}: {len(lines)} jobs: "
          + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
          + (f" ({skipped} skipped: already done)" if skipped else ""))
    for line in lines:
        took = "skipped" if line["action"] == "skip" else f"{line['seconds']:.0f}s"
        verb = {"resume": "resumed", "fresh": "", "skip": ""}[line["action"]]
        text = f"  #{line['num']:<3d} {line['state']:7s} {took:>8s} {verb:8s} {' '.join(o for o in line['overrides'] if o in shown)}"
        if "reason" in line:
            log = Path(line["run_dir"]) / "console.log"
            text += f"\n        {line['reason'][:600]}\n        log: " + (
                str(log) if log.exists() else "none (refused before it started)")
        print(text)
    print(f"report: python -m medchat.report {sweep_dir}", flush=True)
