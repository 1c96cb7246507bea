"""Every supported schema loads; cleaning, dedup and the split are counted and never leak eval rows."""

from __future__ import annotations

import json

import pytest

from conftest import DIALOGUES, compose, shared
from medchat.data import DataError, load_split
from medchat.data.prepare import conversation_hash, question_key


def dataset_cfg(*overrides):
    return compose(*overrides).dataset


def _shipped_rows() -> list[dict]:
    from medchat.data.readers import resolve_path

    return [json.loads(line) for line in resolve_path("medchat:sample_data/medquad.jsonl").read_text().splitlines()]


def test_default_sample_is_real_medquad_with_its_attribution():
    from medchat.data.readers import resolve_path

    rows = _shipped_rows()
    assert 300 <= len(rows) <= 2000
    assert {"document_id", "focus", "source", "question", "answer"} <= set(rows[0])
    assert "MedQuAD" in resolve_path("medchat:sample_data/LICENSE_CC-BY-4.0_and_attribution.md").read_text()
    split = load_split(dataset_cfg())
    assert split.counts["train"] + split.counts["eval"] == len(rows)


def test_default_split_shares_no_document_or_focus_between_train_and_eval():
    rows = _shipped_rows()
    split = load_split(dataset_cfg())
    doc = {r["row"]: rows[r["row"]]["document_id"] for r in split.train + split.eval}
    focus = {r["row"]: rows[r["row"]]["focus"] for r in split.train + split.eval}
    assert len(split.eval) >= 40
    assert not {doc[r["row"]] for r in split.train} & {doc[r["row"]] for r in split.eval}
    assert not {focus[r["row"]] for r in split.train} & {focus[r["row"]] for r in split.eval}
    assert not {conversation_hash(r) for r in split.train} & {conversation_hash(r) for r in split.eval}
    manifest = split.manifest()
    assert manifest["split_by"] == "document_id"
    assert set(manifest["groups"]["eval"]) == {doc[r["row"]] for r in split.eval}
    assert all(e["group"] == doc[e["row"]] for e in manifest["train"])


def test_multi_turn_fixture_loads_with_several_doctor_turns():
    split = load_split(dataset_cfg("dataset=messages", f"dataset.path={DIALOGUES}"))
    assert split.counts["train"] + split.counts["eval"] == 420
    assert any(sum(m["role"] == "assistant" for m in r["messages"]) > 1 for r in split.train)


def test_split_by_keeps_each_group_on_one_side(tmp_path):
    rows = [{"question": f"q{i}?", "answer": f"a{i}.", "doc": f"d{i % 7}"} for i in range(70)]
    path = write_jsonl(tmp_path / "g.jsonl", rows)
    split = load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={path}", "dataset.split_by=doc",
                                   "dataset.eval_size=15"))
    train_groups = {rows[r["row"]]["doc"] for r in split.train}
    eval_groups = {rows[r["row"]]["doc"] for r in split.eval}
    assert not train_groups & eval_groups and len(eval_groups) == 2  # 10 rows a group: two reach 15
    assert split.counts["eval"] == 20 and split.counts["eval_groups"] == 2
    # without split_by the same rows are split row by row, and groups straddle the split
    plain = load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={path}", "dataset.eval_size=15"))
    assert {rows[r["row"]]["doc"] for r in plain.train} & {rows[r["row"]]["doc"] for r in plain.eval}


def test_split_by_errors_name_the_column_and_row(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q?", "answer": "a.", "doc": "x"}] * 3)
    with pytest.raises(DataError, match="no column 'document' .*dataset.split_by"):
        load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={path}", "dataset.split_by=document"))
    with pytest.raises(DataError, match="leaves no group for training"):
        load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={path}", "dataset.split_by=doc",
                               "dataset.dedup=false", "dataset.eval_size=1"))
    path = write_jsonl(tmp_path / "e.jsonl", [{"question": "q?", "answer": "a.", "doc": "x"},
                                              {"question": "r?", "answer": "b.", "doc": ""}])
    with pytest.raises(DataError, match="row 1: empty 'doc'"):
        load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={path}", "dataset.split_by=doc"))


def test_split_is_deterministic_and_seeded():
    a, b = load_split(dataset_cfg()), load_split(dataset_cfg())
    assert a.manifest() == b.manifest()
    c = load_split(dataset_cfg("dataset.seed=7"))
    assert c.fingerprint != a.fingerprint


@pytest.mark.parametrize(
    "relpath,overrides,rows",
    [
        ("chatdoctor/icliniq_1500.json", ["dataset=icliniq"], 1500),
        ("chatdoctor/chatdoctor5k_GenMedGPT_SYNTHETIC.json", ["dataset=chatdoctor"], 5452),
        ("mle_screening/mle_screening_sample_999.csv", ["dataset=mle_screening"], 999),
        ("ai_medical_chatbot/covid_dialogue_en_604_multiturn.jsonl", ["dataset=messages"], 604),
        ("ai_medical_chatbot/ruslanmv_ai_medical_chatbot_first1000.csv", ["dataset=ai_medical_chatbot"], 1000),
    ],
)
def test_shared_schemas_load(relpath, overrides, rows):
    path = shared(relpath)
    split = load_split(dataset_cfg(*overrides, f"dataset.path={path}"))
    assert split.counts["rows_read"] == rows
    first = (split.train + split.eval)[0]["messages"]
    assert [m["role"] for m in first if m["role"] != "system"][:2] == ["user", "assistant"]
    if "dataset=icliniq" in overrides:  # the constant instruction becomes the system prompt
        assert first[0]["role"] == "system" and first[0]["content"].startswith("If you are a doctor")


def test_ai_medical_chatbot_dedup_finds_670_unique():
    path = shared("ai_medical_chatbot/ruslanmv_ai_medical_chatbot_first1000.csv")
    split = load_split(dataset_cfg("dataset=ai_medical_chatbot", f"dataset.path={path}", "dataset.eval_size=0.1"))
    assert split.counts["dropped_duplicate"] == 330
    assert split.counts["train"] + split.counts["eval"] + split.counts["dropped_eval_overlap"] == 670


def test_subsample_and_eval_count():
    path = shared("chatdoctor/icliniq_1500.json")
    split = load_split(dataset_cfg("dataset=icliniq", f"dataset.path={path}", "dataset.n=200", "dataset.eval_size=20"))
    assert split.counts["train"] + split.counts["eval"] + split.counts["dropped_eval_overlap"] == 200
    assert split.counts["eval"] + split.counts["dropped_eval_overlap"] == 20


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


QA = [{"question": f"question {i}?", "answer": f"answer {i}."} for i in range(20)]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match="not found: .*nope.csv"):
        load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={tmp_path}/nope.csv"))


def test_missing_column_names_column_and_file(tmp_path):
    f = write_jsonl(tmp_path / "rows.jsonl", [{"question": "q", "reply": "a"}])
    with pytest.raises(DataError, match=r"rows.jsonl has no column 'answer'.*dataset.columns.answer"):
        load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={f}"))


def test_column_mapping(tmp_path):
    f = write_jsonl(tmp_path / "rows.jsonl", [{"q": r["question"], "a": r["answer"]} for r in QA])
    split = load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={f}", "+dataset.columns.question=q",
                                   "+dataset.columns.answer=a"))
    assert split.counts["train"] + split.counts["eval"] == 20


def test_empty_rows_are_dropped_and_counted(tmp_path):
    rows = QA + [{"question": "  ", "answer": "x"}, {"question": "q?", "answer": None}, {"question": "r?", "answer": ""}]
    f = write_jsonl(tmp_path / "rows.jsonl", rows)
    split = load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={f}"))
    assert split.counts["empty_question"] == 1 and split.counts["empty_answer"] == 2
    assert split.dropped_rows["empty_answer"] == [21, 22]


def test_all_rows_empty_is_an_error(tmp_path):
    f = write_jsonl(tmp_path / "rows.jsonl", [{"question": "", "answer": "a"}] * 3)
    with pytest.raises(DataError, match="no usable rows"):
        load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={f}"))


def test_non_utf8_file_is_named(tmp_path):
    f = tmp_path / "latin1.csv"
    f.write_bytes("question,answer\nfi\u00e8vre?,repos\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv is not UTF-8 .*line 2"):
        load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={f}"))


def test_bad_role_names_the_row(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad = {"messages": [{"role": "patient", "content": "q"}, {"role": "assistant", "content": "a"}]}
    f = write_jsonl(tmp_path / "m.jsonl", [good, good, bad])
    with pytest.raises(DataError, match="row 2: unknown role 'patient'"):
        load_split(dataset_cfg("dataset=messages", f"dataset.path={f}"))


def test_eval_rows_whose_question_is_in_train_are_dropped(tmp_path):
    rows = QA + [{"question": "Question 3?", "answer": f"another answer {i}"} for i in range(10)]
    f = write_jsonl(tmp_path / "rows.jsonl", rows)
    split = load_split(dataset_cfg("dataset=mle_screening", f"dataset.path={f}", "dataset.eval_size=0.5"))
    assert split.counts["dropped_eval_overlap"] > 0
    assert not {question_key(r) for r in split.train} & {question_key(r) for r in split.eval}
