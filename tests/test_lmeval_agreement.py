"""medchat's MCQ scorer against lm-evaluation-harness itself, on the same local items and the same weights.

lm-eval runs offline on task YAMLs that include its own installed medqa / pubmedqa / mmlu configs with the
data replaced by the local files (medchat.evaluation.lmeval_tasks). Per item, medchat must pick the same
option (acc and acc_norm) and compute the same option log-likelihoods.
"""

from __future__ import annotations

import pytest

from conftest import shared

pytest.importorskip("lm_eval")

ITEMS = 4  # per benchmark: lm-eval's startup dominates, a handful of items shows the agreement


def _agreement(tmp_path, model_dir, model_cfg):
    import torch

    from medchat import modeling
    from medchat.config import QuantConfig
    from medchat.evaluation import lmeval_tasks, mcq, mcq_data
    from medchat.hardware import Hardware
    from medchat.plan import model_plan

    folder = shared("mcq_eval")
    names = lmeval_tasks.write_tasks([str(folder)], tmp_path / "tasks", limit=ITEMS)
    theirs = lmeval_tasks.run(tmp_path / "tasks", names, str(model_dir), batch_size=4)

    torch.manual_seed(0)
    model = modeling.load_model(model_plan(model_cfg, QuantConfig(mode="none"), Hardware(), str(model_dir))).eval()
    tokenizer = modeling.load_tokenizer(model_cfg, path=str(model_dir))
    suites = dict(mcq_data.benchmarks([str(folder)]))
    assert len(names) == len(suites) == 4
    for name, items in suites.items():
        ours = mcq.score_items(model, tokenizer, items[:ITEMS], "plain", batch_size=8)
        lm = theirs[lmeval_tasks.PREFIX + name]
        for k, (o, lp, choice) in enumerate(zip(ours, lm["logprobs"], lm["choices"])):
            assert list(o["logprobs"].values()) == pytest.approx(lp, abs=2e-3), f"{name} item {k}"
            assert o["choice"] == items[k].labels[choice], f"{name} item {k}"
            assert float(o["correct"]) == lm["correct"][k] and float(o["correct_norm"]) == lm["correct_norm"][k]
        acc = mcq.accuracy(ours)
        assert abs(acc["acc"]["value"] - lm["acc"]) <= 0.005
        assert abs(acc["acc_norm"]["value"] - lm["acc_norm"]) <= 0.005


def test_per_item_choices_equal_lm_evals_on_the_tiny_model(tmp_path, tiny_dir):
    from medchat.config import ModelConfig

    _agreement(tmp_path, tiny_dir, ModelConfig(dtype="float32", chat_template="chatml"))
