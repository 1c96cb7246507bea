"""BLEU with sacrebleu: corpus BLEU (0-100) over all rows, and sentence BLEU per row.

An `evaluate` metric script, loaded by path (`evaluate.load("rouge")` would need the Hub):
    medchat.evaluation.metrics.load("bleu").compute(predictions=[...], references=[...])
"""

import datasets
import evaluate
import sacrebleu


class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="sacrebleu corpus BLEU (one reference per prediction) and per-example sentence BLEU",
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores.",
            inputs_description="predictions: list of str; references: list of str (one per prediction)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, tokenize="13a"):
        corpus = sacrebleu.metrics.BLEU(tokenize=tokenize)
        sentence = sacrebleu.metrics.BLEU(tokenize=tokenize, effective_order=True)
        score = corpus.corpus_score(predictions, [references])
        return {
            "bleu": score.score,
            "per_example": [sentence.sentence_score(p, [r]).score for p, r in zip(predictions, references)],
            "signature": str(corpus.get_signature()),
        }
