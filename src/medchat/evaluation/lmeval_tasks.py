"""The same local MCQ files as lm-evaluation-harness tasks, so its numbers can be set beside medchat's.

lm-eval's own tasks read MedQA, PubMedQA and MMLU from the Hub. This writes, for each local benchmark file
(the formats of shared/data/mcq_eval), the rows in the schema of the Hub dataset lm-eval's task expects and a
task YAML that `include`s lm-eval's installed task config (so its own prompt functions and metrics are used)
with only the data source replaced by that local JSONL. Nothing reaches the Hub.

    python -m medchat.evaluation.lmeval_tasks ../shared/data/mcq_eval --out runs/lmeval-tasks [--limit 50]
    lm_eval --model hf --model_args pretrained=MODEL_DIR[,peft=RUN/adapter] --device cpu --batch_size 4 \\
        --include_path runs/lmeval-tasks --tasks medchat_medqa_usmle_4options_300,... --output_path OUT

`python -m medchat.evaluation.lmeval_tasks ... --run MODEL_DIR [--peft ADAPTER]` runs it in-process and
prints lm-eval's acc and acc_norm per task.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from medchat.evaluation import mcq_data

PREFIX = "medchat_"


def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def _medqa_rows(path: Path) -> list[dict]:
    """-> GBaker/MedQA-USMLE-4-options-hf's schema (sent1, ending0..3, label), which lm-eval's medqa reads."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            opts = r["options"] if isinstance(r["options"], dict) else {o["key"]: o["value"] for o in r["options"]}
            letters = sorted(opts)
            rows.append({"sent1": r["question"], **{f"ending{i}": opts[k] for i, k in enumerate(letters)},
                         "label": letters.index(r["answer_idx"])})
    return rows


def _pubmedqa_rows(path: Path) -> list[dict]:
    """-> bigbio pubmed_qa source schema (QUESTION, CONTEXTS, final_decision), gold from *_ground_truth.json."""
    data = json.loads(path.read_text())
    truth_path = path.with_name(path.stem + "_ground_truth.json")
    truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
    return [{"pubid": pmid, "QUESTION": r["QUESTION"], "CONTEXTS": list(r.get("CONTEXTS", [])),
             "final_decision": truth.get(pmid, r.get("final_decision"))} for pmid, r in data.items()]


def _mmlu_rows(path: Path) -> list[dict]:
    """-> cais/mmlu's schema (question, choices, answer as an index)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5].strip())} for r in csv.reader(f)]


def _task_yaml(name: str, path: Path, data_file: Path) -> dict:
    tasks = _lm_eval_tasks_dir()
    local = {"task": PREFIX + name, "dataset_path": "json", "dataset_name": None,
             "dataset_kwargs": {"data_files": {"test": str(data_file)}},
             "training_split": None, "validation_split": None, "test_split": "test"}
    both = [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")]
    if path.suffix == ".jsonl":
        return {"include": str(tasks / "medqa" / "medqa.yaml"), **local}
    if path.suffix == ".json":
        return {"include": str(tasks / "pubmedqa" / "pubmedqa.yaml"), **local, "metric_list": both}
    return {"include": str(tasks / "mmlu" / "default" / "_default_template_yaml"), **local, "fewshot_split": None,
            "description": mcq_data.mmlu_description(mcq_data.mmlu_subject(path)), "metric_list": both}


def write_tasks(specs: list[str], out_dir: str | Path, limit: int | None = None) -> list[str]:
    """Task YAMLs + data for every local benchmark file in specs -> the task names (for lm_eval --tasks)."""
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for spec in specs:
        path = Path(spec)
        files = ([path] if path.is_file() else
                 sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json", ".csv")
                        and not p.stem.endswith("_ground_truth")))
        for f in files:
            mcq_data.read_file(f)  # medchat's checks: a malformed file fails here, naming its row
            rows = {".jsonl": _medqa_rows, ".json": _pubmedqa_rows, ".csv": _mmlu_rows}[f.suffix](f)
            rows = rows[:limit] if limit else rows
            data_file = (out_dir / f"{f.stem}.data.jsonl").resolve()
            data_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            (out_dir / f"{PREFIX}{f.stem}.yaml").write_text(yaml.safe_dump(_task_yaml(f.stem, f, data_file),
                                                                            sort_keys=False))
            names.append(PREFIX + f.stem)
    return names


def run(tasks_dir: str | Path, task_names: list[str], model_dir: str, peft: str | None = None,
        batch_size: int = 4, limit: int | None = None) -> dict:
    """lm-eval in-process on CPU -> {task: {"acc", "acc_norm", "choices": [acc's choice index per item],
    "choices_norm": [...]}}, items in file order."""
    import lm_eval
    import numpy as np
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model_args = {"pretrained": model_dir, "device": "cpu", "batch_size": batch_size, "dtype": "float32"}
    if peft:
        model_args["peft"] = peft
    out = lm_eval.simple_evaluate(model=HFLM(**model_args), tasks=list(task_names), num_fewshot=0, limit=limit,
                                  task_manager=TaskManager(include_path=str(tasks_dir)), log_samples=True,
                                  bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    results = {}
    for task in task_names:
        samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
        lls = [np.array([float(r[0]) for r in s["filtered_resps"]]) for s in samples]
        results[task] = {"acc": out["results"][task].get("acc,none"),
                         "acc_norm": out["results"][task].get("acc_norm,none"),
                         "choices": [int(np.argmax(x)) for x in lls],
                         "correct": [float(s["acc"]) for s in samples],
                         "correct_norm": [float(s.get("acc_norm", float("nan"))) for s in samples],
                         "logprobs": [x.tolist() for x in lls]}
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("benchmarks", nargs="+", help="local benchmark files or folders (formats of shared/data/mcq_eval)")
    p.add_argument("--out", required=True, help="folder for the task YAMLs and their data")
    p.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
    p.add_argument("--run", metavar="MODEL_DIR", help="run lm-eval on this model directory")
    p.add_argument("--peft", metavar="ADAPTER", help="with --run: a PEFT adapter on the model")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--save", metavar="FILE.json", help="with --run: write lm-eval's per-item choices and log-likelihoods")
    args = p.parse_args(argv)
    names = write_tasks(args.benchmarks, args.out, args.limit)
    print(f"wrote {len(names)} tasks to {args.out}: {','.join(names)}")
    if args.run:
        results = run(args.out, names, args.run, args.peft, args.batch_size)
        if args.save:
            Path(args.save).write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({t: {k: r[k] for k in ("acc", "acc_norm")} for t, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
