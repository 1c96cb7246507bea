"""Writing a file whole or not at all: every run-dir file (config.yaml, split.json, eval.jsonl, provenance.json,
attempts.json, status.json, plan.json, metrics.json, ...) goes through `write_text` or `write_json`, so a full
or read-only disk, or a kill mid-write, leaves the old file (or none), never a truncated one that a resume,
evaluate.py or a sweep's report would misread.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_text(path: str | Path, text: str) -> None:
    """Written to `<name>.tmp` beside it, then renamed over `path` (atomic on one filesystem)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj, **dumps) -> None:
    """`obj` as indented JSON (non-ASCII kept as is) plus a newline; `dumps`: more json.dumps keywords."""
    write_text(path, json.dumps(obj, **{"indent": 2, "ensure_ascii": False, **dumps}) + "\n")
