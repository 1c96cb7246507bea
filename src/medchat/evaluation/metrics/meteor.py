"""METEOR with nltk (WordNet synonyms, Porter stems), per row and the mean over rows.

Words are split with a regular expression (runs of letters/digits, or single punctuation marks), so no
nltk tokenizer model is needed; WordNet is. medchat.evaluation.wordnet.ensure_wordnet() makes it
available (or says why not) before this script is used. Loaded by path: metrics.load("meteor").
"""

import re

import datasets
import evaluate
from nltk.translate.meteor_score import meteor_score

WORD = re.compile(r"\w+|[^\w\s]")


class Meteor(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="nltk METEOR (alpha 0.9, beta 3, gamma 0.5) per example and its mean",
            citation="Banerjee and Lavie, 2005. METEOR.",
            inputs_description="predictions: list of str; references: list of str (one per prediction)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        per = [float(meteor_score([WORD.findall(r)], WORD.findall(p))) for p, r in zip(predictions, references)]
        return {"meteor": sum(per) / max(len(per), 1), "per_example": per}
