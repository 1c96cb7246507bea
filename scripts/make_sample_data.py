#!/usr/bin/env python3
"""Write medchat's default dataset: a document-level subset of MedQuAD (CC BY 4.0), shipped in the package.

Reads ../shared/data/medquad/medquad_cc_by_4.0.jsonl (7,389 NIH question/answer pairs from 877 documents)
and writes src/medchat/sample_data/medquad.jsonl plus the attribution/license file beside it. Which rows:

- whole documents only (every pair of a chosen document, none of the others), so that a split by
  `document_id` keeps each document on one side;
- documents whose every answer is at most MAX_ANSWER_CHARS long, so that a CPU run trains on whole
  answers (no truncation) in minutes;
- no two chosen documents share a `focus` (the topic, e.g. a disease): MedQuAD often has the same topic
  from two NIH sources with near-identical answers, which would leak across a document split.

Documents are taken in document_id order, so the output is the same on every run (byte for byte).
    python scripts/make_sample_data.py [--src ../shared/data/medquad] [--out src/medchat/sample_data]
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_ANSWER_CHARS = 1600
FIELDS = ("document_id", "pair_id", "source", "focus", "qtype", "url", "question", "answer")
LICENSE = "LICENSE_CC-BY-4.0_and_attribution.md"


def select(rows: list[dict]) -> list[dict]:
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_doc[r["document_id"]].append(r)
    taken_focus: set[str] = set()
    out = []
    for doc in sorted(by_doc):
        pairs = by_doc[doc]
        foci = {p["focus"] for p in pairs}
        if max(len(p["answer"]) for p in pairs) > MAX_ANSWER_CHARS or foci & taken_focus:
            continue
        taken_focus |= foci
        out += sorted(pairs, key=lambda p: int(p["pair_id"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "medquad")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "medchat" / "sample_data")
    args = ap.parse_args()
    rows = [json.loads(line) for line in (args.src / "medquad_cc_by_4.0.jsonl").read_text().splitlines()]
    chosen = select(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "medquad.jsonl", "w") as f:
        for r in chosen:
            f.write(json.dumps({k: r[k] for k in FIELDS}, ensure_ascii=False) + "\n")
    shutil.copyfile(args.src / LICENSE, args.out / LICENSE)
    docs = {r["document_id"] for r in chosen}
    print(f"wrote {len(chosen)} pairs from {len(docs)} documents to {args.out / 'medquad.jsonl'}")


if __name__ == "__main__":
    main()
