"""DPO and ORPO stages on the tiny model: pairs made from an SFT run, a DPO step that raises the
chosen-minus-rejected margin, ORPO's loss falling, exact resume, and the checks made before weights load."""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import compose
from medchat.config import ConfigError, StageConfig
from medchat.pipeline import train
from medchat.rundir import read_status

# stage keys that are medchat's own, not TRL's
OWN_KEYS = {"name", "init_from"}
# short pairs (answers cut to fit, counted) and small batches: every preference run here takes seconds
FAST = ["trainer=debug", "tracker=none", "trainer.max_length=128", "trainer.per_device_train_batch_size=2"]


@pytest.fixture(scope="module")
def pairs(trained_run, tmp_path_factory):
    """Pairs made from the shared tiny SFT run: chosen = the doctor, rejected = the SFT model's greedy answer."""
    from medchat.make_pairs import make_pairs, parse

    out = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    # 16 of the run's 36 training rows (kept cheap) and all 4 of its held-out rows
    make_pairs(parse([f"run_dir={trained_run}", f"out={out}", "max_new_tokens=24", "batch_size=16", "train_limit=16"]))
    return out


def _pref(pairs, *extra):
    return ["dataset=preference", f"dataset.path={pairs}", *FAST, *extra]


def test_stage_keys_are_trl_config_names_and_the_trainer_hooks_exist():
    from trl import DPOConfig, DPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from medchat.stages.dpo import DPO_LOSS_TYPES

    dpo = inspect.signature(DPOConfig).parameters
    for f in dataclasses.fields(StageConfig):
        if f.name not in OWN_KEYS:
            assert f.name in dpo, f"stage.{f.name} is not a DPOConfig field"
    assert "beta" in inspect.signature(ORPOConfig).parameters
    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    assert all(f"'{t}'" in help_text for t in DPO_LOSS_TYPES)
    # medchat hands TRL token ids through these two (private) hooks
    assert "dataset_name" in inspect.signature(DPOTrainer._prepare_dataset).parameters
    assert "feature" in inspect.signature(ORPOTrainer.tokenize_row).parameters


@pytest.mark.parametrize("overrides,key", [
    (["stage=dpo"], "dataset.schema"),
    (["stage=orpo", "dataset=preference", "dataset.path=x.jsonl", "stage.init_from=somewhere"], "stage.init_from"),
    (["stage=dpo", "dataset=preference", "dataset.path=x.jsonl", "stage.loss_type=[sigmod]"], "stage.loss_type"),
    (["stage=dpo", "dataset=preference", "dataset.path=x.jsonl", "stage.beta=0"], "stage.beta"),
    (["dataset=preference", "dataset.path=x.jsonl"], "dataset.schema=preference"),
])
def test_bad_stage_config_fails_naming_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(compose(*overrides, "tracker=none"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_make_pairs_keeps_each_row_on_its_side_of_the_split(trained_run, pairs):
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    split = json.loads((trained_run / "split.json").read_text())
    train_ids, eval_ids = {r["id"] for r in split["train"]}, {r["id"] for r in split["eval"]}
    assert {r["source_id"] for r in rows if r["split"] == "train"} <= train_ids
    assert {r["source_id"] for r in rows if r["split"] == "eval"} <= eval_ids
    assert sum(r["split"] == "eval" for r in rows) >= 1 and sum(r["split"] == "train" for r in rows) >= 12
    assert all(r["chosen"] != r["rejected"] and r["prompt"][-1]["role"] == "user" for r in rows)
    prov = json.loads(pairs.with_name(pairs.name + ".provenance.json").read_text())
    assert prov["run_dir"] == str(trained_run) and prov["answers_from"] == "sft"
    assert prov["settings"]["max_new_tokens"] == 24 and prov["settings"]["generation"]["do_sample"] is False
    assert set(prov["source_ids"]["eval"]) == eval_ids and prov["packages"]["trl"]


def test_make_pairs_refuses_a_typo(trained_run, tmp_path):
    from medchat.make_pairs import parse

    with pytest.raises(ConfigError, match="max_new_token"):
        parse([f"run_dir={trained_run}", f"out={tmp_path}/p.jsonl", "max_new_token=5"])


def _margins(model, dataset) -> torch.Tensor:
    """Summed log-prob of chosen minus rejected answer tokens, per pair (computed here, not by TRL)."""
    out = []
    model.eval()
    with torch.no_grad():
        for row in dataset:
            logps = []
            for side in ("chosen", "rejected"):
                ids = torch.tensor([row["prompt_ids"] + row[f"{side}_ids"]])
                logits = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
                targets = ids[0, 1:]
                per_token = logits.gather(-1, targets[:, None])[:, 0]
                logps.append(per_token[len(row["prompt_ids"]) - 1:].sum())
            out.append(logps[0] - logps[1])
    return torch.stack(out)


def _load(run_dir):
    from medchat import run_models, runs

    return run_models.load_for_generation(runs.open_run(run_dir))[0]


# One DPO run serves the margin test and, as the uninterrupted run, the resume test (the suite is budgeted)
DPO = ["stage=dpo", "trainer.max_steps=4", "trainer.save_steps=2", "trainer.eval_steps=4",
       "trainer.learning_rate=2e-3", "stage.beta=0.5"]


@pytest.fixture(scope="module")
def dpo_run(trained_run, pairs, tmp_path_factory):
    run = tmp_path_factory.mktemp("dpo") / "run"
    cfg = compose(*DPO, f"stage.init_from={trained_run}", *_pref(pairs))
    return run, cfg, train(cfg, run)


def test_dpo_from_an_sft_run_raises_the_margin_on_its_training_pairs(trained_run, dpo_run):
    from medchat import modeling
    from medchat.data.preference import load_pairs, tokenize_pairs

    run, cfg, metrics = dpo_run
    assert read_status(run)["state"] == "done" and metrics["stage"] == "dpo"
    assert metrics["init_from"] == str(trained_run)
    # the reward metrics of the held-out pairs: before training policy == reference, so every reward is 0
    assert metrics["reward_margin_before"] == 0 and metrics["reward_accuracy_after"] is not None
    assert metrics["eval_loss_before"] == pytest.approx(0.6931, abs=1e-3)  # -log sigmoid(0)
    assert json.loads((run / "metrics.json").read_text())["reward_margin_after"] == metrics["reward_margin_after"]
    # the DPO run holds out exactly the SFT run's held-out rows (pairs made from them), so evaluate.py scores
    # SFT and SFT+DPO on the same conversations
    sft_split, dpo_split = (json.loads((r / "split.json").read_text()) for r in (trained_run, run))
    assert {e["hash"] for e in dpo_split["eval"]} == {e["hash"] for e in sft_split["eval"]}
    assert not {e["hash"] for e in dpo_split["train"]} & {e["hash"] for e in sft_split["eval"]}

    tokenizer = modeling.load_tokenizer(cfg.model)
    train_pairs, _ = tokenize_pairs(load_pairs(cfg.dataset).train[:8], tokenizer, "chat_template", 128)
    before = _margins(_load(trained_run), train_pairs)
    after = _margins(_load(run), train_pairs)
    assert after.mean() > before.mean() + 1.0, (before.mean(), after.mean())
    assert (after > before).float().mean() > 0.8


def test_per_pair_and_length_matched_reward_accuracy_match_the_adapters(trained_run, dpo_run):
    """metrics.json's per-pair reward accuracy, overall, length-matched and by length ratio, against rewards
    computed here from the two saved adapters: a DPO reward is beta x (policy - reference) log-probability, so
    chosen beats rejected exactly where the DPO adapter's chosen-minus-rejected margin exceeds the SFT one's."""
    from medchat import modeling
    from medchat.data.preference import load_pairs, tokenize_pairs

    run, cfg, metrics = dpo_run
    tokenizer = modeling.load_tokenizer(cfg.model)
    held_out, _ = tokenize_pairs(load_pairs(cfg.dataset).eval, tokenizer, "chat_template", 128)
    gain = _margins(_load(run), held_out) - _margins(_load(trained_run), held_out)
    assert (gain.abs() > 1e-3).all(), gain  # no near-tie whose sign the adapters' numerics could flip
    wins = (gain > 0).tolist()
    ratios = [len(c) / len(r) for c, r in zip(held_out["chosen_ids"], held_out["rejected_ids"])]
    matched = [w for w, x in zip(wins, ratios) if 0.8 <= x <= 1.25]
    assert metrics["pairs"] == len(wins)
    assert metrics["reward_accuracy_per_pair_after"] == pytest.approx(sum(wins) / len(wins))
    assert metrics["length_matched_pairs"] == len(matched)
    assert metrics["reward_accuracy_length_matched_after"] == (pytest.approx(sum(matched) / len(matched))
                                                                if matched else None)
    bins = metrics["reward_accuracy_by_length_ratio_after"]
    assert sum(b["pairs"] for b in bins.values()) == len(wins) and bins["0.8-1.25"]["pairs"] == len(matched)
    # before training the policy is its reference: every reward is 0, no pair is won
    assert metrics["reward_accuracy_per_pair_before"] == 0


def test_length_ratio_bins_have_exact_edges():
    from medchat.stages.preference import length_ratio_bin, pair_reward_metrics

    # chosen/rejected token counts -> bin: the edges 0.5, 0.8, 1.25 and 2 fall as documented
    cases = {(1, 3): "<0.5", (1, 2): "0.5-0.8", (3, 4): "0.5-0.8", (4, 5): "0.8-1.25", (1, 1): "0.8-1.25",
             (5, 4): "0.8-1.25", (4, 3): "1.25-2", (2, 1): "1.25-2", (5, 2): ">2"}
    assert {k: length_ratio_bin(*k) for k in cases} == cases
    out = pair_reward_metrics([(1.0, 0.0), (0.0, 1.0), (2.0, 1.0)], [(10, 10), (10, 9), (30, 10)])
    assert out["reward_accuracy_per_pair"] == pytest.approx(2 / 3)
    assert out["length_matched_pairs"] == 2 and out["reward_accuracy_length_matched"] == 0.5
    assert out["reward_accuracy_by_length_ratio"][">2"] == {"pairs": 1, "reward_accuracy": 1.0}
    assert out["reward_accuracy_by_length_ratio"]["<0.5"] == {"pairs": 0, "reward_accuracy": None}


def test_evaluate_scores_a_dpo_run_like_an_sft_run(dpo_run):
    """evaluate.py, unchanged, on a DPO run: its held-out rows are the pairs' prompts with the doctor's answer."""
    from test_evaluate_cli import compose_eval

    from medchat.evaluation.runner import run as evaluate

    run = dpo_run[0]
    out = evaluate(compose_eval(f"run_dir={run}", "limit=2", "generation.max_new_tokens=4", "metrics.names=[rouge]",
                                "metrics.perplexity=false"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == 2 and "rouge1" in metrics["models"]["adapter"]


def test_dpo_refuses_pairs_that_cross_the_sft_runs_split(trained_run, pairs, tmp_path):
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    leaked = tmp_path / "leaked.jsonl"
    leaked.write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))  # eval pairs trained on
    with pytest.raises(ConfigError, match="held out"):
        train(compose("stage=dpo", f"stage.init_from={trained_run}", *_pref(leaked)), tmp_path / "run")
    # the held-out questions with another chosen answer: other conversations, the same questions (issue 21: the
    # whole-conversation hash alone let them through)
    held_out = [r for r in rows if r["split"] == "eval"]
    assert held_out
    reworded = tmp_path / "reworded.jsonl"
    reworded.write_text("".join(json.dumps({**r, "split": "train", "chosen": r["chosen"] + " See a doctor."}) + "\n"
                                for r in rows))
    with pytest.raises(ConfigError, match="held out"):
        train(compose("stage=dpo", f"stage.init_from={trained_run}", *_pref(reworded)), tmp_path / "run2")


def test_dpo_refuses_an_sft_run_on_another_base(trained_run, pairs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    with pytest.raises(ConfigError, match="trained on base model"):
        train(compose("stage=dpo", f"stage.init_from={other}", *_pref(pairs), "model.tiny.hidden_size=64"),
              tmp_path / "run")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained_run, unfinished)
    (unfinished / "status").write_text(json.dumps({"state": "failed"}))
    with pytest.raises(ConfigError, match="not finished"):
        train(compose("stage=dpo", f"stage.init_from={unfinished}", *_pref(pairs)), tmp_path / "run2")


def test_orpo_from_the_base_lowers_its_loss_and_logs_rewards_to_wandb(pairs, tmp_path):
    from medchat.tracking import wandb_history

    overrides = [o for o in _pref(pairs) if o != "tracker=none"]
    run = tmp_path / "orpo"
    metrics = train(compose("stage=orpo", *overrides, "tracker=wandb", "trainer.max_steps=8",
                            "trainer.learning_rate=3e-3", "trainer.eval_steps=8"), run)
    assert metrics["stage"] == "orpo" and metrics["init_from"] is None
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"] - 0.3, metrics
    assert metrics["reward_accuracy_before"] is not None and metrics["reward_accuracy_after"] is not None
    history = wandb_history(run)
    assert any("eval/rewards/accuracies" in row for row in history)
    assert any("train/rewards/margins" in row for row in history)


def test_dpo_resume_after_a_crash_ends_where_an_uninterrupted_run_does(trained_run, pairs, dpo_run, tmp_path):
    whole = dpo_run[0]
    common = [*DPO, f"stage.init_from={trained_run}", *_pref(pairs)]
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated crash at step 3"):
        train(compose(*common, "trainer.fail_at_step=3"), broken)
    # resume=auto (the default) continues the failed attempt; a changed stage key would be refused
    with pytest.raises(ConfigError, match="stage.beta"):
        train(compose(*common, "stage.beta=0.3"), broken)
    # and so is a pairs file changed only in one rejected answer: the data fingerprint holds every rejected answer
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    i = next(k for k, r in enumerate(rows) if r["split"] == "train")
    rows[i] = {**rows[i], "rejected": rows[i]["rejected"] + " (edited)"}
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in rows))
    edited_overrides = [o if not o.startswith("dataset.path=") else f"dataset.path={edited}" for o in common]
    with pytest.raises(ConfigError, match="data fingerprint"):
        train(compose(*edited_overrides), broken)
    metrics = train(compose(*common, "trainer.resume=auto"), broken)
    assert metrics["resumed_from"].endswith("checkpoint-2") and metrics["global_step"] == 4
    attempts = json.loads((broken / "attempts.json").read_text())
    assert len(attempts["resumes"]) == 1 and attempts["first"]["config"]["stage"]["name"] == "dpo"
    # the first attempt's held-out rewards before training are kept through the resume
    assert metrics["reward_margin_before"] == 0 and metrics["eval_loss_before"] == dpo_run[2]["eval_loss_before"]
    a = load_file(str(whole / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(broken / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_pairs_differing_only_in_the_rejected_answer_are_distinct_rows_of_the_fingerprint(tmp_path):
    """Without a split column (dataset.eval_size splits): two rejected answers for one prompt are two pairs, not a
    duplicate, and changing one rejected answer changes the data fingerprint (what a resume compares)."""
    from medchat.data.preference import load_pairs

    def write(name, rejected_b):
        rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": f"Wrong {i}."} for i in range(6)]
        rows.append({"prompt": "Question 0?", "chosen": "Answer 0.", "rejected": rejected_b})  # a second rejected
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return load_pairs(compose("dataset=preference", f"dataset.path={path}", "dataset.eval_size=1",
                                  "dataset.drop_eval_overlap=false").dataset)

    a, b = write("a.jsonl", "Another wrong 0."), write("b.jsonl", "Yet another wrong 0.")
    assert a.counts["dropped_duplicate"] == 0 and len(a.train) + len(a.eval) == 7
    assert sorted(r["rejected"] for r in a.train + a.eval if r["messages"][-1]["content"] == "Answer 0.") == \
        ["Another wrong 0.", "Wrong 0."]
    assert a.fingerprint != b.fingerprint
    # the same file read twice: the same fingerprint (a resume of an unchanged file is allowed)
    assert write("a.jsonl", "Another wrong 0.").fingerprint == a.fingerprint
    # an exact duplicate pair (all three fields) is still dropped
    same = write("c.jsonl", "Wrong 0.")
    assert same.counts["dropped_duplicate"] == 1 and len(same.train) + len(same.eval) == 6


def test_sweep_report_groups_runs_by_stage_with_their_reward_metrics(tmp_path):
    from medchat.report import build

    runs = {"0": ("sft", None, 1.5), "1": ("dpo", 0.75, 0.61), "2": ("dpo", 0.25, 0.66), "3": ("orpo", 0.5, 7.1)}
    for name, (stage, accuracy, loss) in runs.items():
        run = tmp_path / name
        run.mkdir()
        (run / "status").write_text(json.dumps({"state": "done"}))
        metrics = {"eval_loss_after": loss, "reward_accuracy_after": accuracy, "reward_margin_after": accuracy}
        if stage != "sft":  # an SFT run's metrics.json names no stage: the report reads its config
            metrics["stage"] = stage
        (run / "metrics.json").write_text(json.dumps(metrics))
        (run / "config.yaml").write_text(f"stage:\n  name: {stage}\n")
    out = build(tmp_path)
    table = (out / "ablation.md").read_text()
    assert "| stage | n |" in table and "held-out reward accuracy ↑" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| stage")}
    assert set(rows) == {"sft", "dpo", "orpo"}
    assert "| 2/2 |" in rows["dpo"] and "0.5000 ± 0.3536" in rows["dpo"]  # mean +- std of 0.75 and 0.25
