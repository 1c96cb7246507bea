"""95% bootstrap intervals over rows, and paired base-vs-adapter differences, for evaluation metrics.

Every number evaluate.py reports is a function of per-row statistics summed over rows: a mean metric
(ROUGE, METEOR, BERTScore, length, EOS rate) sums (value, 1); perplexity sums (NLL, doctor tokens) and
takes exp(NLL / tokens); corpus BLEU sums sacrebleu's n-gram match counts and lengths. So one resample of
the rows is one vector of counts (how often each row was drawn) and every statistic of that resample is
`fn(counts @ stats)`: the percentile bootstrap (Efron) at the cost of a matrix product, with no metric
recomputed.

A paired difference (adapter minus base) resamples the *same* rows for both models, so the row-to-row
spread that both share (hard questions are hard for both) cancels; the interval of the difference is then
much tighter than the two marginal intervals suggest, and it is the one that says whether a change is real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

LEVEL = 0.95
N_BOOT = 2000


@dataclass(frozen=True)
class Statistic:
    """A corpus-level number: fn(sum over rows of stats[row])."""
    stats: np.ndarray  # [rows, k] additive per-row statistics
    fn: Callable[[np.ndarray], float]  # [k] sums -> the number

    def value(self) -> float:
        return float(self.fn(self.stats.sum(0)))


def mean_of(values) -> Statistic:
    values = np.asarray([float(v) for v in values], dtype=np.float64)
    return Statistic(np.stack([values, np.ones_like(values)], 1), lambda s: s[0] / s[1])


def perplexity_of(nll_sums, token_counts) -> Statistic:
    """exp(total NLL / total tokens): the token-weighted perplexity, as perplexity.perplexity() computes it."""
    stats = np.stack([np.asarray(nll_sums, np.float64), np.asarray(token_counts, np.float64)], 1)
    return Statistic(stats, lambda s: math.exp(min(s[0] / s[1], 700.0)) if s[1] > 0 else math.nan)


def bleu_of(predictions: list[str], references: list[str], tokenize: str = "13a") -> Statistic:
    """sacrebleu corpus BLEU from per-sentence match counts (sacrebleu's own paired bootstrap does the same)."""
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU(tokenize=tokenize)
    stats = np.asarray(bleu._extract_corpus_statistics(list(predictions), [list(references)]), dtype=np.float64)
    return Statistic(stats, lambda s: bleu._compute_score_from_stats([int(round(x)) for x in s]).score)


def _resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n]: how many times each row is drawn in each resample (n draws with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _percentiles(samples: np.ndarray, level: float) -> list[float]:
    samples = samples[~np.isnan(samples)]
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))]


def _replicates(stat: Statistic, counts: np.ndarray) -> np.ndarray:
    sums = counts @ stat.stats
    return np.array([stat.fn(s) for s in sums], dtype=np.float64)


def bootstrap(stat: Statistic, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """{"value": on all rows, "ci95": [low, high]} (percentile bootstrap over rows)."""
    n = len(stat.stats)
    if n == 0:
        raise ValueError("bootstrap over no rows")
    reps = _replicates(stat, _resample_counts(n, n_boot, seed))
    return {"value": stat.value(), "ci95": _percentiles(reps, level)}


def paired_difference(base: Statistic, other: Statistic, n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> dict:
    """other - base on the same rows, with the interval of the difference from shared resamples.

    "excludes_zero": the interval lies wholly above or below 0 (the change is larger than the spread
    that resampling the rows produces)."""
    n = len(base.stats)
    if len(other.stats) != n:
        raise ValueError(f"a paired difference needs the same rows for both models, got {n} and {len(other.stats)}")
    counts = _resample_counts(n, n_boot, seed)
    diffs = _replicates(other, counts) - _replicates(base, counts)
    low, high = _percentiles(diffs, level)
    return {"difference": other.value() - base.value(), "ci95": [low, high], "excludes_zero": low > 0 or high < 0}


# per-row score key (evaluation.runner's per-row dicts) -> corpus metric key
MEAN_METRICS = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL", "meteor": "meteor",
                "bertscore_f1": "bertscore_f1", "words": "mean_answer_words", "ended_with_eos": "eos_rate",
                "new_tokens": "mean_new_tokens"}


def statistics(per_row: list[dict], texts: list[str] | None = None, references: list[str] | None = None) -> dict:
    """metric key -> Statistic, from one model's per-row scores (and its texts, for corpus BLEU)."""
    out: dict[str, Statistic] = {}
    for row_key, metric in MEAN_METRICS.items():
        if per_row and all(r.get(row_key) is not None for r in per_row):
            out[metric] = mean_of(r[row_key] for r in per_row)
    if per_row and all("nll_sum" in r for r in per_row):
        out["perplexity"] = perplexity_of([r["nll_sum"] for r in per_row], [r["nll_tokens"] for r in per_row])
    if texts is not None and references is not None and per_row and all("bleu" in r for r in per_row):
        out["bleu"] = bleu_of(texts, references)
    return out


def model_intervals(stats: dict[str, dict[str, Statistic]], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """{"models": {model: {metric: {value, ci95}}}, "differences": {model: {metric: {...}}}} where each
    difference is that model minus the first one (the base, when compare_base=true)."""
    labels = list(stats)
    out = {"method": f"percentile bootstrap over rows, {n_boot} resamples, seed {seed}; paired for differences",
           "models": {m: {k: bootstrap(s, n_boot, seed) for k, s in stats[m].items()} for m in labels},
           "differences": {}}
    for m in labels[1:]:
        shared = [k for k in stats[m] if k in stats[labels[0]]]
        out["differences"][f"{m} - {labels[0]}"] = {
            k: paired_difference(stats[labels[0]][k], stats[m][k], n_boot, seed) for k in shared}
    return out
