"""Issue 21 item 1: preference pairs whose preference is in the content, not in the ending.

A rejected answer cut at max_new_tokens never produced an EOS; scoring one after it (while the chosen answer
scores its own) lets DPO separate the pair by its ending. make_pairs regenerates cut answers with more room,
records per pair which eos rule applies, and data.preference scores no EOS on either side of a
`no_eos_scored` pair. Checked on the token ids TRL's DPOTrainer actually receives."""

from __future__ import annotations

import json

import pytest

from conftest import compose
from medchat.data import DataError
from medchat.data.preference import tokenize_pair
from medchat.pipeline import train

FAST = ["trainer=debug", "tracker=none", "trainer.max_length=128", "trainer.per_device_train_batch_size=2"]
CHOSEN, REJECTED = "Drink water and rest for two days.", "You should see a"


def _record(rule=None, chosen=CHOSEN, rejected=REJECTED):
    r = {"id": "p", "row": 0, "rejected": rejected,
         "messages": [{"role": "user", "content": "I have a fever."}, {"role": "assistant", "content": chosen}]}
    if rule:
        r["eos_rule"] = rule
    return r


def test_both_eos_scores_each_answer_through_its_eos(tiny_tokenizer):
    row, events = tokenize_pair(tiny_tokenizer, _record("both_eos"), "chat_template", 512)
    end = "<|im_end|>"  # ChatML's turn end, the tiny tokenizer's eos
    assert tiny_tokenizer.decode(row["chosen_ids"]) == CHOSEN + end
    assert tiny_tokenizer.decode(row["rejected_ids"]) == REJECTED + end
    assert events == ["eos_rule:both_eos"]


def test_no_eos_scored_drops_the_eos_from_both_answers(tiny_tokenizer):
    row, events = tokenize_pair(tiny_tokenizer, _record("no_eos_scored"), "chat_template", 512)
    # the answer texts exactly, as the tokenizer alone decodes them: content tokens, nothing after
    assert tiny_tokenizer.decode(row["chosen_ids"]) == CHOSEN
    assert tiny_tokenizer.decode(row["rejected_ids"]) == REJECTED
    assert tiny_tokenizer.eos_token_id not in row["chosen_ids"] + row["rejected_ids"]
    assert events == ["eos_rule:no_eos_scored"]


def test_an_answer_cut_to_max_length_turns_the_pair_into_no_eos_scored(tiny_tokenizer):
    long_chosen = " ".join(["Rest and drink plenty of water."] * 20)
    record = _record("both_eos", chosen=long_chosen)
    prompt_len = len(tokenize_pair(tiny_tokenizer, record, "chat_template", 4096)[0]["prompt_ids"])
    row, events = tokenize_pair(tiny_tokenizer, record, "chat_template", prompt_len + 30)
    assert "cut_to_max_length" in events and events[-1] == "eos_rule:no_eos_scored"
    # the rejected answer fits and ended on its own, but its EOS is not scored next to a cut chosen answer
    assert tiny_tokenizer.decode(row["rejected_ids"]) == REJECTED
    assert len(row["chosen_ids"]) == 30 and tiny_tokenizer.eos_token_id not in row["chosen_ids"]


def test_an_unknown_eos_rule_fails_naming_the_column(tmp_path):
    from medchat.data.preference import load_pairs

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "q?", "chosen": "a", "rejected": "b", "eos_rule": "both"}) + "\n")
    cfg = compose("dataset=preference", f"dataset.path={path}", "stage=dpo", "tracker=none").dataset
    with pytest.raises(DataError, match="'eos_rule' is 'both'"):
        load_pairs(cfg)


def test_make_pairs_regenerates_cut_answers_and_records_the_rule(trained_run, tmp_path):
    from medchat.make_pairs import make_pairs, parse

    out = tmp_path / "pairs.jsonl"
    # 3 new tokens cut (almost) every answer; the second try has 6
    record = make_pairs(parse([f"run_dir={trained_run}", f"out={out}", "max_new_tokens=3",
                               "regenerate_max_new_tokens=6", "train_limit=6", "batch_size=8"]))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    counts = record["counts"]
    assert counts["regenerated"] >= 1
    for r in rows:
        assert r["eos_rule"] == ("both_eos" if r["rejected_ended_with_eos"] else "no_eos_scored")
    assert counts["no_eos_scored"] == sum(r["eos_rule"] == "no_eos_scored" for r in rows)
    assert counts["both_eos"] + counts["no_eos_scored"] == len(rows) == counts["train"] + counts["eval"]
    assert counts["rejected_without_eos"] == counts["no_eos_scored"]
    prov = json.loads(out.with_name(out.name + ".provenance.json").read_text())
    assert prov["counts"] == counts and prov["settings"]["regenerate_max_new_tokens"] == 6
    assert prov["settings"]["merge"] is True  # as evaluate.py and chat generate
    assert prov["settings"]["generation"]["do_sample"] is False


def _write_pairs(path):
    """8 train + 2 eval pairs, half of them with a rejected answer cut before its EOS."""
    rows = []
    for i in range(10):
        cut = i % 2 == 0
        rows.append({"prompt": f"Question {i}: is a fever of {37 + i % 4} degrees a worry?",
                     "chosen": f"A fever of {37 + i % 4} degrees is usually mild; rest and drink water.",
                     "rejected": "It could be" if cut else "No.",
                     "eos_rule": "no_eos_scored" if cut else "both_eos",
                     "split": "eval" if i >= 8 else "train"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_dpo_scores_no_eos_after_a_cut_answer(tmp_path, monkeypatch, tiny_tokenizer):
    """The batches DPOTrainer computes its loss on: labels are the completion tokens (TRL's own masking)."""
    from medchat.stages.trainers import MedchatDPOTrainer

    pairs = _write_pairs(tmp_path / "pairs.jsonl")
    seen = []
    original = MedchatDPOTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append({k: inputs[k].detach().cpu() for k in ("input_ids", "completion_mask")})
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(MedchatDPOTrainer, "compute_loss", spy)
    cfg = compose("stage=dpo", "dataset=preference", f"dataset.path={tmp_path / 'pairs.jsonl'}", *FAST,
                  "trainer.max_steps=2", "trainer.per_device_eval_batch_size=2", "dataset.dedup=false")
    train(cfg, tmp_path / "run")
    eos = tiny_tokenizer.eos_token_id
    rejected_texts = {r["rejected"]: r["eos_rule"] for r in pairs}
    checked = {"no_eos_scored": 0, "both_eos": 0}
    for batch in seen:
        n = batch["input_ids"].shape[0] // 2  # [chosen..., rejected...]
        for i in range(n):
            rejected = batch["input_ids"][n + i][batch["completion_mask"][n + i].bool()].tolist()
            chosen = batch["input_ids"][i][batch["completion_mask"][i].bool()].tolist()
            text = tiny_tokenizer.decode([t for t in rejected if t != eos])
            rule = rejected_texts[text]
            checked[rule] += 1
            if rule == "no_eos_scored":
                assert eos not in chosen and eos not in rejected
            else:
                assert chosen[-1] == eos and rejected[-1] == eos
    assert checked["no_eos_scored"] >= 2 and checked["both_eos"] >= 2, checked
