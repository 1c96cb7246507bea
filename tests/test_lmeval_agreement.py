"""medchat's MCQ scorer against lm-evaluation-harness itself, on the same local items and the same weights.

lm-eval runs offline on task YAMLs that include its own installed medqa / pubmedqa / mmlu configs with the
data replaced by the local files (medchat.evaluation.lmeval_tasks). Per item, medchat must pick the same
option (acc and acc_norm) and compute the same option log-likelihoods, for the base model and for the base with
a trained adapter. The adapter case is evaluate.py's `quant=none merge=false`: the base unquantized in float32
with the adapter unmerged, which is what lm-eval's `--model_args pretrained=BASE,peft=RUN/adapter` loads.
(evaluate.py's default for a QLoRA run, `merge=true` with the run's own quantization, scores other weights: the
NF4 base dequantized with the adapter merged, the function the run trained.)
"""

from __future__ import annotations

import json

import pytest

from conftest import CONF, shared

pytest.importorskip("lm_eval")

# Items per benchmark: the first 12 of each file. Their gold letters vary on MedQA and both MMLU files (asserted
# below), so agreement cannot come from a model that always picks one letter. PubMedQA's local file has the gold
# answer "yes" on all 200 items, so no choice of items varies it there.
ITEMS = 12
LETTERED = ("medqa_usmle_4options_300", "clinical_knowledge_test", "college_medicine_test")


def _compose_eval(*overrides: str):
    from hydra import compose, initialize_config_dir

    from medchat.config import register_configs
    from medchat.evaluation.config import register_evaluate_configs

    register_configs()
    register_evaluate_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def _check_golds(suites: dict) -> None:
    assert set(suites) == {*LETTERED, "pubmedqa_test_200"}
    for name in LETTERED:
        golds = [item.labels[item.answer] for item in suites[name][:ITEMS]]
        assert len(set(golds)) >= 3, f"{name}: the first {ITEMS} golds are {golds}"
    assert {item.labels[item.answer] for item in suites["pubmedqa_test_200"][:ITEMS]} == {"yes"}


def _agree(ours: dict[str, list[dict]], theirs: dict, who: str) -> None:
    """ours: benchmark -> medchat's per-item records (mcq.score_items or a <benchmark>.jsonl's model entry)."""
    from medchat.evaluation import lmeval_tasks, mcq

    for name, records in ours.items():
        lm = theirs[lmeval_tasks.PREFIX + name]
        assert len(records) == len(lm["logprobs"]) == ITEMS, f"{who} {name}"
        for k, (o, lp) in enumerate(zip(records, lm["logprobs"])):
            labels = list(o["logprobs"])
            assert list(o["logprobs"].values()) == pytest.approx(lp, abs=2e-3), f"{who} {name} item {k}"
            assert o["choice"] == labels[lm["choices"][k]], f"{who} {name} item {k}"
            assert float(o["correct"]) == lm["correct"][k] and float(o["correct_norm"]) == lm["correct_norm"][k]
        acc = mcq.accuracy(records)
        assert abs(acc["acc"]["value"] - lm["acc"]) <= 0.005, f"{who} {name}"
        assert abs(acc["acc_norm"]["value"] - lm["acc_norm"]) <= 0.005, f"{who} {name}"


def test_base_and_unmerged_adapter_equal_lm_evals_pretrained_and_peft(tmp_path, trained_run):
    """evaluate.py `task=mcq compare_base=true quant=none merge=false` on a trained tiny QLoRA run, item by
    item against lm-eval's `pretrained=BASE` (base) and `pretrained=BASE,peft=RUN/adapter` (adapter)."""
    from medchat import run_models, runs
    from medchat.evaluation import lmeval_tasks, mcq_data
    from medchat.evaluation.runner import run as evaluate

    folder = shared("mcq_eval")
    _check_golds(dict(mcq_data.benchmarks([str(folder)])))
    out = evaluate(_compose_eval(f"run_dir={trained_run}", "task=mcq", f"mcq.benchmarks=[{folder}]", f"limit={ITEMS}",
                                "compare_base=true", "quant=none", "merge=false", f"out_dir={tmp_path / 'mcq'}"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["merge"] is False and metrics["quant"] == "none"
    assert metrics["weights"]["adapter"].endswith("unmerged") and "unquantized, float32" in metrics["weights"]["base"]
    assert "Weights, adapter: " in (out / "summary.md").read_text()
    ours: dict[str, dict[str, list[dict]]] = {"base": {}, "adapter": {}}
    for name in (*LETTERED, "pubmedqa_test_200"):
        rows = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        for model in ours:
            ours[model][name] = [r["choices"][model] for r in rows]
    # the adapter changed the scores (else the peft= comparison would test nothing)
    moved = max(abs(a - b) for name in ours["base"] for ra, rb in zip(ours["adapter"][name], ours["base"][name])
                for a, b in zip(ra["logprobs"].values(), rb["logprobs"].values()))
    assert moved > 1e-3, moved

    base = str(run_models.base_path(runs.open_run(trained_run), None))
    names = lmeval_tasks.write_tasks([str(folder)], tmp_path / "tasks", limit=ITEMS)
    _agree(ours["base"], lmeval_tasks.run(tmp_path / "tasks", names, base, batch_size=8), "base")
    _agree(ours["adapter"], lmeval_tasks.run(tmp_path / "tasks", names, base, peft=str(trained_run / "adapter"),
                                             batch_size=8), "base + adapter (peft=)")
