"""ROUGE-1/2/L F1 with Google's rouge_score (Porter stemming), per row and their mean over rows.

An `evaluate` metric script, loaded by path: medchat.evaluation.metrics.load("rouge").
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

TYPES = ("rouge1", "rouge2", "rougeL")


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="rouge_score F-measures (rouge1, rouge2, rougeL) per example and their mean",
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description="predictions: list of str; references: list of str (one per prediction)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, use_stemmer=True):
        scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=use_stemmer)
        per = []
        for p, r in zip(predictions, references):
            scores = scorer.score(r, p)  # rouge_score's order: (target, prediction)
            per.append({t: float(scores[t].fmeasure) for t in TYPES})
        n = max(len(per), 1)
        return {**{t: sum(row[t] for row in per) / n for t in TYPES}, "per_example": per}
