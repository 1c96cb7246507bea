"""Several datasets in one run (dataset.sources): each read with its own schema and columns, then mixed.

Each source takes `n` of its rows (seeded), or all of them; or, when the sources carry weights, the
largest mixture in which source i makes up weight_i / sum(weights) of the rows without repeating a row
(the scarcest source, relative to its weight, sets the size). The mixed rows then go through the usual
dedup / subsample / split (medchat.data.prepare); split.json's counts carry, per source, the rows read,
dropped, taken, and how many landed in train and eval. Record ids become `<source>:<id>` so ids from two
files cannot collide.
"""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

from medchat.data.readers import DataError, ReadResult, load_rows, normalise

log = logging.getLogger(__name__)


def source_name(src, i: int) -> str:
    return src.name or src.path or src.hub_id or f"source{i}"


def _reader_cfg(src, top) -> SimpleNamespace:
    return SimpleNamespace(
        path=src.path, hub_id=src.hub_id, subset=src.subset, revision=src.revision, hub_split=src.hub_split,
        data_files=src.data_files, format=src.format, schema=src.schema, columns=dict(src.columns),
        system_prompt=src.system_prompt if src.system_prompt is not None else top.system_prompt,
        num_proc=top.num_proc)


def shares(available: list[int], weights: list[float] | None, counts: list[int | None]) -> list[int]:
    """Rows to take from each source."""
    if weights:
        total = sum(weights)
        size = min(a / (w / total) for a, w in zip(available, weights))
        return [min(a, int(round(size * w / total))) for a, w in zip(available, weights)]
    out = []
    for a, n in zip(available, counts):
        if n is not None and n > a:
            log.warning("a dataset source asks for n=%d rows but has %d: using all", n, a)
        out.append(a if n is None else min(n, a))
    return out


def read_sources(cfg) -> ReadResult:
    """dataset.sources -> one ReadResult of all sources' conversations, each tagged with its source."""
    reads, names = [], []
    for i, src in enumerate(cfg.sources):
        name = source_name(src, i)
        if name in names:
            raise DataError(f"dataset.sources[{i}]: two sources are named {name!r}; set a distinct `name`")
        table, where = load_rows(_reader_cfg(src, cfg))
        reads.append(normalise(table, _reader_cfg(src, cfg), f"{name} ({where})" if name != where else where))
        names.append(name)
    weights = [s.weight for s in cfg.sources] if cfg.sources[0].weight is not None else None
    take = shares([len(r.records) for r in reads], weights, [s.n for s in cfg.sources])
    merged = ReadResult(records=[], source=" + ".join(names))
    per_source = {}
    for name, read, k in zip(names, reads, take):
        records = read.records[:]
        random.Random(cfg.seed).shuffle(records)
        for r in records[:k]:
            merged.records.append({**r, "id": f"{name}:{r['id']}", "source": name})
        per_source[name] = {"rows_read": len(read.records) + sum(read.dropped.values()), **read.dropped,
                            "usable": len(read.records), "taken": k}
        for reason, count in read.dropped.items():
            merged.dropped[reason] = merged.dropped.get(reason, 0) + count
            merged.dropped_rows.setdefault(f"{name}:{reason}", read.dropped_rows.get(reason, []))
        for fix, count in read.fixed.items():
            merged.fixed[fix] = merged.fixed.get(fix, 0) + count
        if k < len(read.records):
            merged.dropped["not_taken_from_source"] = merged.dropped.get("not_taken_from_source", 0) + len(read.records) - k
    merged.sources = per_source
    log.info("dataset mixture: %s", {n: s["taken"] for n, s in per_source.items()})
    return merged


def count_by_source(split, read: ReadResult) -> None:
    """Add each source's train / eval counts to split.counts["sources"]."""
    per_source = read.sources
    if not per_source:
        return
    for name in per_source:
        per_source[name]["train"] = sum(r.get("source") == name for r in split.train)
        per_source[name]["eval"] = sum(r.get("source") == name for r in split.eval)
    split.counts["sources"] = per_source
