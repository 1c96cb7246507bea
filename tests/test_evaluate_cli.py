"""evaluate.py end to end on a real (tiny) training run, and the bad inputs it must refuse clearly."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import CONF, ROOT, shared
from medchat.config import ConfigError
from medchat.data import DataError

# Also logs generation metrics during training, to an offline W&B run (checked below). Eval batches of one packed
# row each: batches with different numbers of doctor tokens, where a mean of per-batch means and the token-weighted
# perplexity evaluate.py computes would differ (issue 21 item 3).
TRAIN = ["trainer=debug", "dataset.n=40", "dataset.eval_size=6", "trainer.max_steps=4", "tracker=wandb",
         "trainer.per_device_eval_batch_size=1",
         "eval.every_steps=2", "eval.num_samples=3", "eval.max_new_tokens=8", "eval.metrics=[bleu,rouge,meteor]"]
METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "meteor", "bertscore_f1", "perplexity", "mean_answer_words", "eos_rate")


def _cli(script: str, *args: str):
    env = {**os.environ, "WANDB_MODE": "offline"}
    out = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def compose_eval(*overrides: str):
    from hydra import compose, initialize_config_dir

    from medchat.config import register_configs
    from medchat.evaluation.config import register_evaluate_configs

    register_configs()
    register_evaluate_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def _cli_on_a_terminal(script: str, *args: str) -> str:
    """Run `python script args` on a pseudo-terminal (120 x 40, as a user's shell), -> everything it printed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env={**os.environ, "WANDB_MODE": "offline"},
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    output = b"".join(chunks).decode(errors="replace")
    assert proc.wait(timeout=900) == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run made the way a user makes one: `python train.py ... hydra.run.dir=R`, in a terminal."""
    path = tmp_path_factory.mktemp("evalrun") / "run"
    console = _cli_on_a_terminal("train.py", *TRAIN, f"hydra.run.dir={path}")
    (path.parent / "console.txt").write_text(console)  # what the user saw
    return path


def test_the_training_console_is_quiet(run):
    """Issue 22: no FutureWarning from medchat's arguments (transformers' renamed gradient_checkpointing*), no
    known-harmless third-party lines (medchat.console), no progress bars of small `datasets` maps; the evaluation
    plan is among the first lines."""
    console = (run.parent / "console.txt").read_text()
    assert "FutureWarning" not in console and "checkpointing` is deprecated" not in console, console
    assert "kernels-community" not in console and "publisher trust" not in console
    assert "Packing train dataset" not in console and "fitting to max_length" not in console
    assert "evaluation: 6 held-out rows scored before training, every 4 optimizer steps (1 time in 4 planned" in console
    # on a terminal: a progress bar with step, loss, tokens/s, elapsed<left (issue 22 item 2), no raw metric dicts
    assert re.search(r"training: +\d+%\|[^|]*\| [1-4]/4 \[\d\d:\d\d<\d\d:\d\d, [^]]*tokens/s\]", console), console[-3000:]
    assert "held-out loss before training: " in console and "held-out loss at step 4/4: " in console
    assert "{'loss'" not in console and "{'eval_loss'" not in console


def test_evaluate_writes_predictions_metrics_and_summary_with_the_base_side_by_side(run, monkeypatch):
    _cli("evaluate.py", f"run_dir={run}", "compare_base=true", "generation.max_new_tokens=16", "generation.batch_size=4")
    out = run / "eval" / "heldout-base+adapter"
    metrics = json.loads((out / "metrics.json").read_text())
    heldout = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert metrics["rows"] == len(heldout) == 6 and metrics["split"] == "eval.jsonl"
    assert set(metrics["models"]) == {"adapter", "base"}
    wordnet_missing = "meteor" in metrics["unavailable"]
    for model in metrics["models"].values():
        for key in METRICS:
            assert key in model, key
            if not (key == "meteor" and wordnet_missing):
                assert isinstance(model[key], (int, float)) and math.isfinite(model[key]), (key, model[key])
    # One perplexity (issue 21 item 3): the run's metrics.json (the trainer's held-out loss, packed rows in eval
    # batches of one, each with its own number of doctor tokens) and evaluate.py (one row per sequence) score the
    # same doctor tokens token-weighted. The merged, dequantized adapter is the function the run trained; the
    # tolerance covers the different batching's float sums only (0.5% is the bar).
    trained = json.loads((run / "metrics.json").read_text())
    assert metrics["models"]["adapter"]["perplexity"] == pytest.approx(trained["perplexity_after"], rel=1e-3)
    assert metrics["models"]["base"]["perplexity"] == pytest.approx(trained["perplexity_before"], rel=1e-3)
    rows_scored = [json.loads(line)["scores"]["adapter"]
                   for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert trained["eval_scored_tokens"] == sum(r["nll_tokens"] for r in rows_scored)
    assert trained["perplexity_definition"] == metrics["perplexity_definition"]
    assert "every doctor turn" in metrics["perplexity_definition"]

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [h["id"] for h in heldout]
    for r, h in zip(rows, heldout):
        assert r["reference"] == h["messages"][-1]["content"]
        assert r["prompt"].endswith("<|im_start|>assistant\n") and h["messages"][-2]["content"] in r["prompt"]
        assert set(r["generation"]) == {"adapter", "base"} and set(r["scores"]["adapter"]) >= {"bleu", "rouge1", "perplexity"}
    summary = (out / "summary.md").read_text()
    assert "| metric | base | adapter | adapter - base |" in summary and "BLEU" in summary and "6 held-out rows" in summary
    # each number with its bootstrap interval, and the paired difference with its own
    iv = metrics["intervals"]
    for m in ("base", "adapter"):
        for key in ("bleu", "rougeL", "perplexity", "eos_rate", "mean_answer_words"):
            b = iv["models"][m][key]
            assert b["value"] == pytest.approx(metrics["models"][m][key]) and b["ci95"][0] <= b["value"] <= b["ci95"][1]
    d = iv["differences"]["adapter - base"]["perplexity"]
    assert d["difference"] == pytest.approx(metrics["models"]["adapter"]["perplexity"] - metrics["models"]["base"]["perplexity"])
    assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]

    # W&B: the evaluation landed in the training run's row (evaluate.py resumed that run: its own offline session
    # folder, the same id) with the predictions table, base and fine-tuned side by side
    from medchat.tracking import wandb_records, wandb_records_by_kind

    run_id = (run / "wandb_run_id").read_text().strip()
    train_record = wandb_records(run, "run", which=0)[0]
    assert train_record["run_id"] == run_id and train_record["job_type"] == "train"
    assert train_record["display_name"] == "tiny-sample-run"  # <model>-<dataset>-<run dir name>
    assert {"tiny", "sample", "trainer=debug"} <= set(train_record["tags"])
    config = train_record["config"]["update"]
    assert config["data.train"] + config["data.eval"] == 40 and config["lora.r"] == 16
    sessions = sorted(p.name for p in run.glob(f"wandb/offline-run-*-{run_id}"))
    assert len(sessions) == 2, sessions  # training, then this evaluation
    # keys (docs/evaluation.md "W&B keys"): eval/<evaluation folder>/<model>/<metric>, and the run's summary
    session = wandb_records_by_kind(run, which=-1)
    history = session["history"]
    ns = "eval/heldout-base+adapter"
    logged = next(r["item"] for r in history if f"{ns}/predictions.path" in r["item"])
    table = json.loads(next(run.glob(f"wandb/{sessions[-1]}/files/{logged[f'{ns}/predictions.path']}")).read_text())
    assert table["columns"][:5] == ["id", "prompt", "reference", "base answer", "fine-tuned answer"]
    assert "adapter/rouge1" in table["columns"] and "base/bleu" in table["columns"]
    assert [row[0] for row in table["data"]] == [r["id"] for r in rows]
    assert [row[4] for row in table["data"]] == [r["generation"]["adapter"] for r in rows]
    for model in ("adapter", "base"):
        for key in ("rouge1", "bleu", "perplexity", "eos_rate"):
            assert logged[f"{ns}/{model}/{key}"] == metrics["models"][model][key]
    summary = {k: v for r in session["summary"] for k, v in r.get("update", {}).items()}
    assert summary[f"{ns}/adapter/rouge1"] == metrics["models"]["adapter"]["rouge1"]
    assert not [k for k in logged if k.startswith("eval_gen")]

    # A smoke run with limit= keeps its own folder (the full evaluation above is not overwritten) and its own W&B
    # keys, in the history only: the run's summary keeps its full held-out evaluation. Here rouge_score is missing:
    # ROUGE is skipped and said so (summary.md, evaluate.log), BLEU still scored.
    from medchat.evaluation import metrics as text_metrics
    from medchat.evaluation.runner import run as evaluate

    monkeypatch.setitem(sys.modules, "rouge_score", None)
    monkeypatch.setattr(text_metrics, "_LOADED", {k: v for k, v in text_metrics._LOADED.items() if k == "bleu"})
    evaluate(compose_eval(f"run_dir={run}", "limit=2", "generation.max_new_tokens=4", "metrics.names=[bleu,rouge]"))
    smoke_dir = run / "eval" / "heldout-adapter-limit2"
    smoke = json.loads((smoke_dir / "metrics.json").read_text())
    assert smoke["rows"] == 2 and smoke["limit"] == 2
    assert isinstance(smoke["models"]["adapter"]["bleu"], float) and smoke["models"]["adapter"]["rouge1"] is None
    assert "rouge_score" in smoke["unavailable"]["rouge"]
    assert "**rouge unavailable**: skipped: a package it needs is missing" in (smoke_dir / "summary.md").read_text()
    assert "metric rouge skipped" in (smoke_dir / "evaluate.log").read_text()
    smoke_ns = "eval/heldout-adapter-limit2/adapter"
    session = wandb_records_by_kind(run, which=-1)
    assert any(r["item"].get(f"{smoke_ns}/bleu") == smoke["models"]["adapter"]["bleu"] for r in session["history"])
    smoke_summary = [k for r in session["summary"] for k in r.get("update", {})]
    assert smoke_summary and not [k for k in smoke_summary if "limit2" in k]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    from medchat.evaluation import locate

    assert locate.full_heldout(run)[0] == out  # what the model card and the sweep report quote

    # two evaluations of the same rows compared afterwards give the same paired numbers as compare_base=true
    from medchat.evaluation.compare import compare

    again = compare(out, out, first_model="base", second_model="adapter")
    assert again["difference"] == iv["differences"]["adapter - base"] and again["rows"] == 6
    with pytest.raises(ValueError, match="did not score the same rows"):
        compare(out, run / "eval" / "heldout-adapter-limit2")


def test_rows_from_another_file_are_scored_and_training_rows_refused(run, tmp_path):
    from medchat.data.readers import resolve_path
    from medchat.evaluation.runner import run as evaluate

    train_cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["dataset"]
    source = str(resolve_path(train_cfg["path"]))
    # the run's own source file: its training rows are among them, so the evaluation refuses
    with pytest.raises(DataError, match="were training rows of .*refusing to score them"):
        evaluate(compose_eval(f"run_dir={run}", f"rows.path={source}", f"rows.schema={train_cfg['schema']}",
                              "generation.max_new_tokens=4", "metrics.names=[bleu]"))
    # the same rows under another system prompt are other conversations but the same questions: still refused
    # (issue 21: on e45111a the whole-conversation hash let them through)
    with pytest.raises(DataError, match="were training rows of .*refusing to score them"):
        evaluate(compose_eval(f"run_dir={run}", f"rows.path={source}", f"rows.schema={train_cfg['schema']}",
                              "rows.system_prompt=You are a terse assistant.", "generation.max_new_tokens=4",
                              "metrics.names=[bleu]"))
    # rows the run never saw, in another schema (question/answer CSV), a seeded subset of 3
    other = tmp_path / "ood.csv"
    other.write_text("question,answer\n" + "".join(f"What helps symptom {i}?,Rest and fluids {i}.\n" for i in range(8)))
    out = evaluate(compose_eval(f"run_dir={run}", f"rows.path={other}", "rows.schema=qa", "rows.n=3",
                                "generation.max_new_tokens=4", "metrics.names=[bleu,rouge]", "compare_base=true"))
    assert out == run / "eval" / "ood-n3-seed0-base+adapter"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == 3 and metrics["split"] == str(other) and set(metrics["models"]) == {"base", "adapter"}
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["reference"] for p in preds] == [f"Rest and fluids {p['row']}." for p in preds]
    assert "none is a training row of the run" in (out / "summary.md").read_text()


def test_generation_metrics_and_samples_were_logged_to_wandb_during_training(run):
    from medchat.tracking import wandb_history

    lines = [json.loads(line) for line in (run / "generation_metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    assert all(0 <= line["gen/rouge1"] <= 1 and "gen/bleu" in line and "gen/eos_rate" in line for line in lines)
    logged = [row for row in wandb_history(run) if "gen/bleu" in row]
    assert [row["train/global_step"] for row in logged] == [2, 4]
    assert logged[0]["gen/samples._type"] == "table-file"
    table = json.loads(next(run.glob(f"wandb/offline-run-*/files/{logged[0]['gen/samples.path']}")).read_text())
    assert table["columns"] == ["step", "prompt", "reference", "generation"] and len(table["data"]) == 3
    heldout = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [row[2] for row in table["data"]] == [h["messages"][-1]["content"] for h in heldout[:3]]


def test_a_preset_base_model_on_the_runs_heldout_rows(run):
    from medchat.evaluation.runner import run as evaluate

    out = evaluate(compose_eval(f"run_dir={run}", "model=tiny", "limit=2", "generation.max_new_tokens=4",
                                "metrics.names=[bleu,rouge]"))
    assert out == run / "eval" / "heldout-tiny-limit2"
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["models"]) == ["base"] and metrics["rows"] == 2


def test_mcq_runs_on_each_shared_benchmark_file(run, tmp_path):
    from medchat.evaluation.runner import run as evaluate

    folder = shared("mcq_eval")
    # the top-level limit applies to task=mcq too (N items of each benchmark)
    out = evaluate(compose_eval(f"run_dir={run}", "task=mcq", f"mcq.benchmarks=[{folder}]", "limit=6",
                                "compare_base=true"))
    assert out == run / "eval" / "mcq-base+adapter-limit6"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["benchmarks"]) == {"medqa_usmle_4options_300", "pubmedqa_test_200", "clinical_knowledge_test",
                                          "college_medicine_test"}
    for name, bench in metrics["benchmarks"].items():
        assert bench["items"] == 6
        for result in bench["models"].values():
            for key in ("acc", "acc_norm"):
                low, high = result[key]["ci95"]
                assert low <= result[key]["value"] <= high and result[key]["correct"] == round(result[key]["value"] * 6)
            if bench["chance"] == 0.25:  # one-character labels: normalising by length changes nothing
                assert result["acc_norm"] == result["acc"]
        items = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert len(items) == 6 and set(items[0]["choices"]) == {"adapter", "base"}


@pytest.fixture
def no_model_loading(monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the bad input was caught")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def _copy(run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("checkpoints", "eval", "eval-*"))
    return target


def test_a_run_dir_without_an_adapter(run, tmp_path, no_model_loading):
    from medchat.evaluation.runner import run as evaluate

    broken = _copy(run, tmp_path)
    shutil.rmtree(broken / "adapter")
    with pytest.raises(FileNotFoundError, match="has no trained adapter.*adapter_config.json is missing.*status is 'done'"):
        evaluate(compose_eval(f"run_dir={broken}"))


def test_an_adapter_whose_base_model_differs(run, tmp_path, no_model_loading):
    from medchat.evaluation.runner import run as evaluate
    from medchat.config import TinyModelConfig
    from medchat.tiny import tiny_model_dir

    other = _copy(run, tmp_path)
    cfg = yaml.safe_load((other / ".hydra" / "config.yaml").read_text())
    cfg["model"]["tiny"]["hidden_size"] = 64  # the run's config now names another base than the adapter's
    (other / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="was trained on base model .*tiny-.* but the base to load is"):
        evaluate(compose_eval(f"run_dir={other}"))
    # Told to use another folder as the base, the shapes still have to fit.
    narrow = tiny_model_dir(TinyModelConfig(hidden_size=64, intermediate_size=192))
    with pytest.raises(ConfigError, match="does not fit base model"):
        evaluate(compose_eval(f"run_dir={run}", f"base_model={narrow}"))


def test_an_empty_eval_split(run, tmp_path, no_model_loading):
    from medchat.evaluation.runner import run as evaluate

    empty = _copy(run, tmp_path)
    (empty / "eval.jsonl").write_text("")
    with pytest.raises(DataError, match="eval.jsonl is empty: the run set no rows aside"):
        evaluate(compose_eval(f"run_dir={empty}"))


def test_a_training_row_is_never_scored(run, tmp_path, no_model_loading):
    from medchat.evaluation.runner import run as evaluate

    leaky = _copy(run, tmp_path)
    split = json.loads((leaky / "split.json").read_text())
    split["train"].append(split["eval"][1])  # as if that row had also been trained on
    (leaky / "split.json").write_text(json.dumps(split))
    with pytest.raises(DataError, match="line 2 .* is a training row of this run"):
        evaluate(compose_eval(f"run_dir={leaky}"))


def test_a_benchmark_file_missing_its_answers_fails_before_the_model_loads(run, tmp_path, no_model_loading):
    from medchat.evaluation.runner import run as evaluate

    bad = tmp_path / "medqa.jsonl"
    bad.write_text(json.dumps({"question": "Q?", "options": {"A": "x", "B": "y"}, "answer": "x"}) + "\n")
    with pytest.raises(DataError, match="medqa.jsonl item 0: no 'answer_idx' field"):
        evaluate(compose_eval(f"run_dir={run}", "task=mcq", f"mcq.benchmarks=[{bad}]"))


@pytest.mark.parametrize("overrides,match", [
    ([], "set run_dir=RUN"),
    (["model=tiny", "compare_base=true"], "compare_base=true needs run_dir"),
    (["run_dir=x", "task=mcq"], "task=mcq needs mcq.benchmarks"),
    (["run_dir=x", "metrics.names=[bleu,cider]"], "unknown cider"),
    (["run_dir=x", "rows.n=3"], "rows.n / rows.columns need rows.path"),
    (["run_dir=x", "task=mcq", "mcq.benchmarks=[a]", "limit=2", "mcq.limit=3"], "limit=2 and mcq.limit=3 disagree"),
])
def test_config_mistakes_name_the_key(overrides, match):
    from medchat.evaluation.runner import run as evaluate

    with pytest.raises(ConfigError, match=match):
        evaluate(compose_eval(*overrides))


def test_an_exported_folder_is_scored_and_its_card_quotes_its_own_numbers(run, tmp_path):
    from medchat.evaluation.runner import run as evaluate
    from medchat.export import export

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    common = ["generation.max_new_tokens=4", "metrics.names=[bleu]"]
    full = json.loads((evaluate(compose_eval(f"run_dir={copy}", *common)) / "metrics.json").read_text())
    merged = export(copy, merge=True, dtype="bfloat16")
    card = (merged / "README.md").read_text()
    assert "not this folder's 16-bit merge" in card  # only the run's adapter was evaluated so far
    assert json.loads((merged / "medchat_export.json").read_text())["card_numbers"]["artifact"]["path"].endswith("adapter")

    out = evaluate(compose_eval(f"run_dir={copy}", f"artifact={merged}", *common))
    assert out == copy / "eval" / "heldout-export_merged"
    shipped = json.loads((out / "metrics.json").read_text())
    assert shipped["artifact"] == {"kind": "exported merged model, loaded as saved", "path": str(merged)}
    # the bf16 merge is a slightly different function from the dequantized-NF4 merge evaluate.py scores by default
    ppl, ppl_shipped = full["models"]["adapter"]["perplexity"], shipped["models"]["adapter"]["perplexity"]
    assert ppl_shipped == pytest.approx(ppl, rel=0.05) and ppl_shipped != ppl

    merged = export(copy, merge=True, dtype="bfloat16", overwrite=True)
    card = (merged / "README.md").read_text()
    assert "belong to this folder, as shipped" in card and f"{ppl_shipped:.4g}" in card
    record = json.loads((merged / "medchat_export.json").read_text())
    assert record["kind"] == "merged" and record["card_numbers"]["evaluation"] == str(out)

    # an adapter export is the adapter itself: scoring it gives the run adapter's numbers
    adapter = export(copy)
    same = json.loads((evaluate(compose_eval(f"run_dir={copy}", f"artifact={adapter}", *common)) / "metrics.json").read_text())
    assert same["models"]["adapter"]["perplexity"] == pytest.approx(ppl, rel=1e-6)
