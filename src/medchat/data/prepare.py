"""Clean, deduplicate, subsample and split conversations; every drop is counted.

The order matters and is fixed: exact duplicates (of a preference pair: prompt, chosen and rejected) go first
(so one example never lands on both sides), then a seeded shuffle, the `n` subsample, the eval split, and last
the eval rows whose question also appears in train (near-leaks a reviewer would reject). With
`dataset.split_by=<column>` the eval split takes whole groups (e.g. every pair of one MedQuAD document):
answers drawn from one source text share sentences, so a row-level split would score recall of training text
as generalisation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass, field

from medchat.data.readers import DataError, ReadResult

log = logging.getLogger(__name__)


@dataclass
class Split:
    train: list[dict]
    eval: list[dict]
    source: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)
    fingerprint: str = ""
    split_by: str | None = None

    def manifest(self) -> dict:
        """What split.json records: which source rows went where, and why others were dropped."""
        out = {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "counts": self.counts,
            "dropped_rows": self.dropped_rows,
            # What chat and the model card use as the run's system prompt (read from here, never guessed from
            # the eval rows): the system text every training conversation shares; null when none or they differ.
            "train_system_prompt": shared_system_prompt(self.train),
            "train": [_entry(r) for r in self.train],
            "eval": [_entry(r) for r in self.eval],
        }
        if self.split_by:
            out["split_by"] = self.split_by
            out["groups"] = {"train": sorted({r["group"] for r in self.train}),
                             "eval": sorted({r["group"] for r in self.eval})}
        return out


def _entry(record: dict) -> dict:
    entry = {"id": record["id"], "row": record["row"], "hash": conversation_hash(record),
             "question": question_hash(record)}
    if "group" in record:
        entry["group"] = record["group"]
    return entry


def shared_system_prompt(records: list[dict]) -> str | None:
    systems = {r["messages"][0]["content"] if r["messages"] and r["messages"][0]["role"] == "system" else None
               for r in records}
    return systems.pop() if len(systems) == 1 else None


def conversation_hash(record: dict) -> str:
    blob = json.dumps(record["messages"], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_hash(record: dict) -> str:
    """What makes two records the same example (dedup, the data fingerprint): the conversation, and for a
    preference pair also its rejected answer. Several rejected answers for one prompt are distinct pairs, and a
    pairs file changed only in a rejected answer has another fingerprint (so a resume refuses it). A pair's
    eos_rule changes which tokens are scored, so a rule other than the default both_eos is part of it too."""
    if "rejected" not in record:
        return conversation_hash(record)
    rule = record.get("eos_rule", "both_eos")
    blob = conversation_hash(record) + record["rejected"] + ("" if rule == "both_eos" else f"\0{rule}")
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def question_key(record: dict) -> str:
    first = next(m["content"] for m in record["messages"] if m["role"] == "user")
    return re.sub(r"\s+", " ", first).strip().lower()


def question_hash(record: dict) -> str:
    """The normalised first question's hash: what leakage checks against a run's split compare (a row with
    another system prompt or answer is still the same question)."""
    return hashlib.sha256(question_key(record).encode()).hexdigest()[:16]


def deduplicate(records: list[dict]) -> tuple[list[dict], list[int]]:
    seen: set[str] = set()
    kept, dropped = [], []
    for r in records:
        h = record_hash(r)
        if h in seen:
            dropped.append(r["row"])
        else:
            seen.add(h)
            kept.append(r)
    return kept, dropped


# dataset.eval_size unset: 10% of the rows, at most 1,000. Held-out loss on 1,000 rows is already precise to
# about 1% (its standard error shrinks as 1/sqrt(rows)); 10% of HealthCareMagic-100k (10,000 rows) would make
# every evaluation cost as much as ~3,000 training rows' forward and backward passes, for no better a number.
AUTO_EVAL_FRACTION = 0.1
AUTO_EVAL_MAX_ROWS = 1000


def eval_count(eval_size: float | None, total: int) -> int:
    """Held-out rows for dataset.eval_size: < 1 a fraction, >= 1 a count, None: min(10%, 1,000)."""
    if eval_size is None:
        n = max(min(round(AUTO_EVAL_FRACTION * total), AUTO_EVAL_MAX_ROWS), 1)
        if n >= total:
            raise DataError(f"{total} rows are too few to hold any out: set dataset.eval_size=0 (no evaluation)")
        return n
    n = round(eval_size * total) if eval_size < 1 else int(eval_size)
    if eval_size > 0:
        n = max(n, 1)
    if n >= total:
        raise DataError(f"dataset.eval_size={eval_size} leaves no training rows out of {total}")
    return n


def deduplicate_counted(records: list[dict], counts: dict, dropped_rows: dict) -> list[dict]:
    """deduplicate(), with what went recorded in counts / dropped_rows (split.json)."""
    records, dup_rows = deduplicate(records)
    counts["dropped_duplicate"] = len(dup_rows)
    dropped_rows["duplicate"] = dup_rows[:20]
    return records


def drop_eval_overlap_counted(train_rows: list[dict], eval_rows: list[dict], counts: dict,
                              dropped_rows: dict) -> list[dict]:
    """The eval rows whose question is not also a training question; the others counted as dropped."""
    train_questions = {question_key(r) for r in train_rows}
    overlap = [r for r in eval_rows if question_key(r) in train_questions]
    counts["dropped_eval_overlap"] = len(overlap)
    dropped_rows["eval_overlap"] = [r["row"] for r in overlap][:20]
    return [r for r in eval_rows if question_key(r) not in train_questions]


def start_split(read: ReadResult, cfg) -> tuple[list[dict], dict, dict]:
    """The first steps of every split: the read's counts, then deduplication (dataset.dedup), counted.
    -> (records, counts, dropped_rows), which `sample` and `finish_split` go on counting into."""
    counts = {"rows_read": len(read.records) + sum(read.dropped.values()), **read.dropped, **read.fixed}
    dropped_rows = dict(read.dropped_rows)
    records = read.records
    if cfg.dedup:
        records = deduplicate_counted(records, counts, dropped_rows)
    return records, counts, dropped_rows


def sample(records: list[dict], cfg, counts: dict) -> list[dict]:
    """The records shuffled with dataset.seed, then the first dataset.n of them (the rest counted not_sampled)."""
    records = records[:]
    random.Random(cfg.seed).shuffle(records)
    if cfg.n is not None:
        if cfg.n > len(records):
            log.warning("dataset.n=%d but only %d rows remain: using all", cfg.n, len(records))
        counts["not_sampled"] = max(len(records) - cfg.n, 0)
        records = records[: cfg.n]
    return records


def finish_split(read: ReadResult, cfg, train_rows: list[dict], eval_rows: list[dict], counts: dict,
                 dropped_rows: dict, *, split_by: str | None = None, held_out: int = 0, what: str = "data") -> Split:
    """The last steps of every split: eval rows asking a training question dropped (dataset.drop_eval_overlap,
    counted; `held_out` > 0 rows asked for and none left is an error), the sides counted, the fingerprint."""
    if cfg.drop_eval_overlap and eval_rows:
        eval_rows = drop_eval_overlap_counted(train_rows, eval_rows, counts, dropped_rows)
        if held_out and not eval_rows:
            raise DataError("every eval row's question also appears in train: no held-out rows remain")
    counts["train"], counts["eval"] = len(train_rows), len(eval_rows)
    fingerprint = data_fingerprint(train_rows, eval_rows)
    log.info("%s %s: %s", what, read.source, counts)
    return Split(train_rows, eval_rows, read.source, counts, dropped_rows, fingerprint, split_by)


def split(read: ReadResult, cfg) -> Split:
    records, counts, dropped_rows = start_split(read, cfg)
    records = sample(records, cfg, counts)
    n_eval = eval_count(cfg.eval_size, len(records))
    split_by = getattr(cfg, "split_by", None)
    if split_by:
        eval_rows, train_rows = group_split(records, n_eval, split_by)
        counts["eval_groups"] = len({r["group"] for r in eval_rows})
        counts["train_groups"] = len({r["group"] for r in train_rows})
    else:
        eval_rows, train_rows = records[:n_eval], records[n_eval:]
    return finish_split(read, cfg, train_rows, eval_rows, counts, dropped_rows, split_by=split_by, held_out=n_eval)


def data_fingerprint(train_rows: list[dict], eval_rows: list[dict]) -> str:
    """The rows on each side of the split, in order (record_hash: a pair's rejected answer included)."""
    hashes = [[record_hash(r) for r in train_rows], [record_hash(r) for r in eval_rows]]
    return hashlib.sha256(json.dumps(hashes).encode()).hexdigest()[:16]


def group_split(records: list[dict], n_eval: int, column: str) -> tuple[list[dict], list[dict]]:
    """Whole groups to eval, in the (shuffled) order their first row appears, until >= n_eval rows."""
    if n_eval == 0:
        return [], records
    order = list(dict.fromkeys(r["group"] for r in records))
    eval_groups: set[str] = set()
    taken = 0
    sizes: dict[str, int] = {}
    for r in records:
        sizes[r["group"]] = sizes.get(r["group"], 0) + 1
    for g in order:
        if taken >= n_eval:
            break
        eval_groups.add(g)
        taken += sizes[g]
    if len(eval_groups) == len(order):
        raise DataError(f"dataset.split_by={column}: the {len(order)} groups hold {len(records)} rows and "
                        f"dataset.eval_size asks {n_eval} for eval, which leaves no group for training")
    eval_rows = [r for r in records if r["group"] in eval_groups]
    train_rows = [r for r in records if r["group"] not in eval_groups]
    return eval_rows, train_rows
