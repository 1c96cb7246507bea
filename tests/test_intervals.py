"""Bootstrap intervals and paired differences against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medchat.evaluation import intervals
from medchat.evaluation.perplexity import perplexity


def test_resample_distribution_matches_the_binomial_by_hand():
    # rows [0, 0, 1]: a resample's mean is k/3 with k ~ Binomial(3, 1/3): P(k=0) = 8/27, P(k=3) = 1/27
    stat = intervals.mean_of([0, 0, 1])
    counts = intervals._resample_counts(3, 40000, seed=1)
    reps = intervals._replicates(stat, counts)
    for k, p in {0: 8 / 27, 1: 12 / 27, 2: 6 / 27, 3: 1 / 27}.items():
        assert np.mean(np.isclose(reps, k / 3)) == pytest.approx(p, abs=0.01)


def test_bootstrap_spread_of_a_mean_is_the_closed_form():
    # The bootstrap variance of a mean is (1/n) * mean((x - xbar)^2); the 95% interval is about +- 1.96 of it.
    x = np.random.default_rng(0).exponential(size=200)
    se = math.sqrt(np.mean((x - x.mean()) ** 2) / len(x))
    out = intervals.bootstrap(intervals.mean_of(x), n_boot=20000, seed=3)
    assert out["value"] == pytest.approx(x.mean())
    low, high = out["ci95"]
    assert low < x.mean() < high
    assert (high - low) / (2 * 1.96 * se) == pytest.approx(1.0, abs=0.05)


def test_paired_difference_cancels_what_rows_share():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, size=100)  # wide row-to-row spread
    shifted = base + 0.02  # every row improved by the same small amount
    a, b = intervals.mean_of(base), intervals.mean_of(shifted)
    d = intervals.paired_difference(a, b, n_boot=2000)
    assert d["difference"] == pytest.approx(0.02)
    assert d["ci95"] == pytest.approx([0.02, 0.02])
    assert d["excludes_zero"]
    # unpaired, the two marginal intervals overlap almost entirely: alone they could not show the change
    ia, ib = intervals.bootstrap(a)["ci95"], intervals.bootstrap(b)["ci95"]
    assert ib[0] < ia[1]


def test_paired_difference_interval_is_the_normal_one_for_noise():
    rng = np.random.default_rng(2)
    base = rng.normal(size=400)
    other = base + rng.normal(0.0, 1.0, size=400)  # no real change: noise only
    d_rows = other - base
    half = 1.96 * math.sqrt(np.mean((d_rows - d_rows.mean()) ** 2) / len(d_rows))
    d = intervals.paired_difference(intervals.mean_of(base), intervals.mean_of(other), n_boot=20000, seed=5)
    assert d["ci95"][0] == pytest.approx(d_rows.mean() - half, abs=0.1 * half)
    assert d["ci95"][1] == pytest.approx(d_rows.mean() + half, abs=0.1 * half)
    with pytest.raises(ValueError, match="same rows"):
        intervals.paired_difference(intervals.mean_of(base), intervals.mean_of(other[:10]))


def test_corpus_statistics_reproduce_the_reported_numbers():
    import sacrebleu

    hyps = ["the cat sat on the mat", "a dog barks loudly", "hello there world", "take two tablets daily"]
    refs = ["the cat is on the mat", "the dog barks", "hello world", "take one tablet twice daily"]
    assert intervals.bleu_of(hyps, refs).value() == pytest.approx(
        sacrebleu.metrics.BLEU(tokenize="13a").corpus_score(hyps, [refs]).score)
    nll = [(12.0, 4), (3.0, 6), (30.0, 10)]
    ppl = intervals.perplexity_of([s for s, _ in nll], [c for _, c in nll])
    assert ppl.value() == pytest.approx(perplexity(nll)) == pytest.approx(math.exp(45 / 20))
    low, high = intervals.bootstrap(ppl, n_boot=500)["ci95"]
    assert low <= ppl.value() <= high and low < high


def test_model_intervals_from_per_row_scores():
    base_rows = [{"rougeL": v, "words": w, "ended_with_eos": e, "nll_sum": 2.0 * w, "nll_tokens": w, "bleu": 0.0}
                 for v, w, e in [(0.1, 10, True), (0.2, 12, False), (0.3, 8, True)]]
    tuned_rows = [dict(r, rougeL=r["rougeL"] + 0.1) for r in base_rows]
    texts, refs = ["a b c", "d e f", "g h i"], ["a b c", "d e x", "y z w"]
    stats = {"base": intervals.statistics(base_rows, texts, refs), "adapter": intervals.statistics(tuned_rows, texts, refs)}
    assert set(stats["base"]) == {"rougeL", "mean_answer_words", "eos_rate", "perplexity", "bleu"}
    out = intervals.model_intervals(stats, n_boot=200)
    assert out["models"]["base"]["eos_rate"]["value"] == pytest.approx(2 / 3)
    assert out["models"]["base"]["perplexity"]["value"] == pytest.approx(math.exp(2.0))
    d = out["differences"]["adapter - base"]
    assert d["rougeL"]["difference"] == pytest.approx(0.1) and d["rougeL"]["excludes_zero"]
    assert d["bleu"]["difference"] == 0.0 and not d["bleu"]["excludes_zero"]
