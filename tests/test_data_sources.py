"""ShareGPT rows, Hub-style specs (builder + data_files), mixtures of datasets, and the tokenized cache."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import DIALOGUES, compose
from medchat.config import ConfigError
from medchat.config_checks import validate
from medchat.data import DataError, load_split

SAMPLE = DIALOGUES  # multi-turn synthetic dialogues (issue 9 moved them out of the package)


def _compose(*overrides: str):
    """The default dataset (MedQuAD) splits by document_id, a column these files do not have."""
    return compose("dataset.split_by=null", *overrides)


ROLE_TO_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system"}


def _sample(n: int, skip: int = 0) -> list[list[dict]]:
    lines = SAMPLE.read_text().splitlines()[skip:skip + n]
    return [json.loads(line)["messages"] for line in lines]


def sharegpt_file(path, n=60, skip=0):
    with open(path, "w") as f:
        for msgs in _sample(n, skip):
            f.write(json.dumps({"conversations": [{"from": ROLE_TO_SHAREGPT[m["role"]], "value": m["content"]}
                                                  for m in msgs]}) + "\n")
    return path


def qa_csv(path, n=60, skip=200):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Q", "A"])
        for msgs in _sample(n, skip):
            user = next(m["content"] for m in msgs if m["role"] == "user")
            w.writerow([user, next(m["content"] for m in msgs if m["role"] == "assistant")])
    return path


def test_sharegpt_rows_become_the_same_conversations_as_their_messages(tmp_path):
    f = sharegpt_file(tmp_path / "chats.jsonl", n=30)
    split = load_split(_compose(f"dataset.path={f}", "dataset.schema=sharegpt", "dataset.eval_size=0",
                               "dataset.dedup=false").dataset)
    originals = {json.dumps(m) for m in _sample(30)}
    got = [r["messages"] for r in split.train]
    assert len(got) == 30 and all(json.dumps(m) in originals for m in got)
    assert {m["role"] for m in got[0]} <= {"system", "user", "assistant"}


def test_sharegpt_unknown_role_names_the_row_and_turn(tmp_path):
    f = tmp_path / "bad.jsonl"
    rows = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
            {"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "{}"}]}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"row 1: turn 1 has from='function_call'"):
        load_split(_compose(f"dataset.path={f}", "dataset.schema=sharegpt").dataset)


def test_hub_builder_with_data_files_reads_local_files_without_network(tmp_path):
    f = sharegpt_file(tmp_path / "chats.jsonl", n=25)
    cfg = _compose("dataset.path=null", "dataset.hub_id=json", f"dataset.data_files=[{f}]",
                  "dataset.schema=sharegpt", "dataset.eval_size=5").dataset
    split = load_split(cfg)
    assert split.counts["train"] + split.counts["eval"] == 25 and split.source.startswith("hub:json")
    with pytest.raises(DataError, match="hub:json.*split=validation"):
        load_split(_compose("dataset.path=null", "dataset.hub_id=json", f"dataset.data_files=[{f}]",
                           "dataset.schema=sharegpt", "dataset.hub_split=validation").dataset)


def _mix(tmp_path, *extra):
    a = sharegpt_file(tmp_path / "a.jsonl", n=60)
    b = qa_csv(tmp_path / "b.csv", n=60)
    sources = (f"dataset.sources=[{{name: chats, path: '{a}', schema: sharegpt}},"
               f"{{name: faq, path: '{b}', schema: qa, columns: {{question: Q, answer: A}}}}]")
    return _compose("dataset.path=null", sources, *extra)


def test_mixture_keeps_each_sources_columns_and_counts_per_source(tmp_path):
    cfg = _mix(tmp_path, "dataset.sources.0.n=40", "dataset.eval_size=10")
    split = load_split(cfg.dataset)
    per = split.counts["sources"]
    assert per["chats"]["taken"] == 40 and per["faq"]["taken"] == 60
    assert per["chats"]["train"] + per["chats"]["eval"] + per["faq"]["train"] + per["faq"]["eval"] == \
        split.counts["train"] + split.counts["eval"]
    assert {r["source"] for r in split.train} == {"chats", "faq"}
    faq = next(r for r in split.train if r["source"] == "faq")
    assert faq["id"].startswith("faq:") and [m["role"] for m in faq["messages"]] == ["user", "assistant"]


def test_mixture_weights_set_each_sources_share(tmp_path):
    cfg = _mix(tmp_path, "dataset.sources.0.weight=3", "dataset.sources.1.weight=1", "dataset.eval_size=0",
               "dataset.dedup=false")
    per = load_split(cfg.dataset).counts["sources"]
    # 60 chats at 3/4 of the mix -> 80 rows in all, 20 of them faq
    assert (per["chats"]["taken"], per["faq"]["taken"]) == (60, 20)


@pytest.mark.parametrize("extra, match", [
    (["dataset.sources.0.weight=1"], "give every source a weight, or none"),
    (["dataset.sources.0.weight=1", "dataset.sources.0.n=3", "dataset.sources.1.weight=1"], "not both"),
    (["dataset.path=x.jsonl"], "dataset.sources replaces dataset.path"),
    (["dataset.sources.1.schema=chatml"], r"sources\[1\].schema='chatml'"),
])
def test_mixture_config_errors_name_the_source(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        validate(_mix(tmp_path, *extra))


def test_a_mixed_sharegpt_and_csv_run_trains_and_records_sources(tmp_path):
    from medchat.pipeline import train

    run = tmp_path / "run"
    metrics = train(_mix(tmp_path, "trainer=debug", "trainer.max_steps=6", "trainer.eval_steps=6",
                         "dataset.eval_size=8", "tracker=none", "quant=none"), run)
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    split = json.loads((run / "split.json").read_text())
    assert set(split["counts"]["sources"]) == {"chats", "faq"}
    assert metrics["data"]["sources"]["faq"]["taken"] == 60


def test_a_hub_style_sharegpt_spec_trains(tmp_path):
    from medchat.pipeline import train

    f = sharegpt_file(tmp_path / "chats.jsonl", n=60)
    metrics = train(_compose("dataset.path=null", "dataset.hub_id=json", f"dataset.data_files={f}",
                            "dataset.schema=sharegpt", "dataset.eval_size=8", "trainer=debug", "trainer.max_steps=6",
                            "trainer.eval_steps=6", "tracker=none", "quant=none"), tmp_path / "run")
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"] and metrics["global_step"] == 6
