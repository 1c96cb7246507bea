"""Medical multiple-choice benchmarks -> items: a prompt, its answer options, the gold option.

Local files, in the formats of shared/data/mcq_eval (or a folder of them):
  *.jsonl  MedQA:    {"question", "options": {"A": ..., "D": ...}, "answer_idx": "B", ...}
  *.json   PubMedQA: {PMID: {"QUESTION", "CONTEXTS": [...], "final_decision"?}}; the gold label comes from a
           `<stem>_ground_truth.json` beside it ({PMID: yes|no|maybe}) when present, else final_decision
  *.csv    MMLU:     no header; question, A, B, C, D, answer letter
Hub datasets, by name (needs network access): medqa (GBaker/MedQA-USMLE-4-options, test), pubmedqa
(qiaojin/PubMedQA pqa_labeled), mmlu_medical (cais/mmlu: six medical subjects, test).

Each item's `prompt` is the zero-shot context of the lm-evaluation-harness task for that benchmark
(lm_eval/tasks/medqa, pubmedqa, mmlu/default), character for character, so medchat's numbers can be put
beside the field's (tests/test_lmeval_agreement.py checks it against lm-eval itself):
  MedQA    "Question: {question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:"            choices " A" .. " D"
  PubMedQA "Abstract: {contexts joined by newlines}\nQuestion: {question}\nAnswer:"       " yes" " no" " maybe"
  MMLU     "The following are multiple choice questions (with answers) about {subject}.\n\n"
           "{question.strip()}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:"                 " A" .. " D"
A local MMLU file's subject comes from its name (`clinical_knowledge_test.csv` -> "clinical knowledge").
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from medchat.data import DataError

LETTERS = "ABCDEFGHIJ"
PUBMEDQA_LABELS = ("yes", "no", "maybe")
MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine")


@dataclass
class Item:
    id: str
    question: str  # the text before the options: question, or context + question
    options: list[str]  # what each option says (shown in the prompt for lettered benchmarks)
    labels: list[str]  # what the model is scored on saying: "A".."D", or yes/no/maybe
    answer: int  # index of the gold option
    lettered: bool = True
    prompt: str = ""  # lm-eval's context for this item, ending in "Answer:" (the label follows after a space)


def lettered_prompt(question: str, options: list[str], labels: list[str], header: str = "Question: ",
                    description: str = "") -> str:
    lines = "".join(f"{label}. {text}\n" for label, text in zip(labels, options))
    return f"{description}{header}{question}\n{lines}Answer:"


def mmlu_description(subject: str) -> str:
    """lm-eval's MMLU task description (lm_eval/tasks/mmlu/_generate_configs.py), prepended to every prompt."""
    return f"The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\n\n"


def _medqa(rows, source: str) -> list[Item]:
    items = []
    for i, row in enumerate(rows):
        where = f"{source} item {i}"
        for key in ("question", "options", "answer_idx"):
            if row.get(key) in (None, ""):
                raise DataError(f"{where}: no {key!r} field (MedQA format: question, options{{A..D}}, answer_idx)")
        options = row["options"]
        if isinstance(options, list):  # some copies store [{"key": "A", "value": ...}, ...]
            options = {o["key"]: o["value"] for o in options}
        letters = sorted(options)
        if row["answer_idx"] not in letters:
            raise DataError(f"{where}: answer_idx {row['answer_idx']!r} is not one of the options {letters}")
        texts = [options[k] for k in letters]
        items.append(Item(str(row.get("id", i)), row["question"], texts, letters, letters.index(row["answer_idx"]),
                          prompt=lettered_prompt(row["question"], texts, letters)))
    return items


def _pubmedqa_item(pmid: str, question: str, contexts, label, where: str) -> Item:
    if label is None:
        raise DataError(f"{where}: PMID {pmid} has no answer (no final_decision and no ground-truth entry)")
    if label not in PUBMEDQA_LABELS:
        raise DataError(f"{where}: PMID {pmid} answer {label!r} is not one of {PUBMEDQA_LABELS}")
    context = "\n".join(contexts) if isinstance(contexts, list) else str(contexts)
    text = f"Abstract: {context}\nQuestion: {question}"
    return Item(pmid, text, list(PUBMEDQA_LABELS), list(PUBMEDQA_LABELS), PUBMEDQA_LABELS.index(label),
                lettered=False, prompt=f"{text}\nAnswer:")


def _pubmedqa_file(path: Path) -> list[Item]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError(f"{path}: not PubMedQA's format (a dict of PMID -> {{QUESTION, CONTEXTS, ...}})")
    truth_path = path.with_name(path.stem + "_ground_truth.json")
    truth = json.loads(truth_path.read_text()) if truth_path.is_file() else {}
    items = []
    for pmid, row in data.items():
        if "QUESTION" not in row:
            raise DataError(f"{path}: PMID {pmid} has no 'QUESTION' field")
        label = truth.get(pmid, row.get("final_decision"))
        items.append(_pubmedqa_item(pmid, row["QUESTION"], row.get("CONTEXTS", []), label, str(path)))
    return items


def _mmlu_rows(rows, source: str, subject: str) -> list[Item]:
    items = []
    for i, row in enumerate(rows):
        where = f"{source} line {i + 1}"
        if len(row) < 6 or not row[5].strip():
            raise DataError(f"{where}: expected 6 columns (question, A, B, C, D, answer) with an answer letter, "
                            f"got {len(row)} columns")
        answer = row[5].strip()
        if answer not in LETTERS[:4]:
            raise DataError(f"{where}: answer {answer!r} is not one of A, B, C, D")
        labels, question = list(LETTERS[:4]), row[0].strip()
        items.append(Item(str(i), question, row[1:5], labels, LETTERS.index(answer),
                          prompt=lettered_prompt(question, row[1:5], labels, header="",
                                                 description=mmlu_description(subject))))
    return items


def mmlu_subject(path: Path) -> str:
    """MMLU's file naming (data/test/<subject>_test.csv) -> the subject, as lm-eval's description names it."""
    stem = path.stem
    for suffix in ("_test", "_val", "_dev"):
        stem = stem.removesuffix(suffix)
    return stem


def read_file(path: Path) -> list[Item]:
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path} line {n}: not JSON ({e})") from None
        return _medqa(rows, str(path))
    if path.suffix == ".json":
        return _pubmedqa_file(path)
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return _mmlu_rows(list(csv.reader(f)), str(path), mmlu_subject(path))
    raise DataError(f"{path}: unknown benchmark format (expected .jsonl MedQA, .json PubMedQA or .csv MMLU)")


def _hub(name: str) -> list[tuple[str, list[Item]]]:
    import datasets

    if name == "medqa":
        rows = datasets.load_dataset("GBaker/MedQA-USMLE-4-options", split="test")
        return [("medqa", _medqa(rows, "hub:GBaker/MedQA-USMLE-4-options"))]
    if name == "pubmedqa":
        rows = datasets.load_dataset("qiaojin/PubMedQA", "pqa_labeled", split="train")
        return [("pubmedqa", [_pubmedqa_item(str(r["pubid"]), r["question"], r["context"]["contexts"],
                                             r.get("final_decision"), "hub:qiaojin/PubMedQA") for r in rows])]
    out = []
    for subject in MMLU_MEDICAL:
        rows = datasets.load_dataset("cais/mmlu", subject, split="test")
        out.append((f"mmlu_{subject}", _mmlu_rows([[r["question"], *r["choices"], LETTERS[r["answer"]]] for r in rows],
                                                  f"hub:cais/mmlu/{subject}", subject)))
    return out


def benchmarks(specs: list[str]) -> list[tuple[str, list[Item]]]:
    """mcq.benchmarks -> [(name, items)]; names are the files' stems (or the Hub names)."""
    out: list[tuple[str, list[Item]]] = []
    for spec in specs:
        spec = str(spec)
        if spec in ("medqa", "pubmedqa", "mmlu_medical"):
            out += _hub(spec)
            continue
        path = Path(spec).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json", ".csv")
                           and not p.stem.endswith("_ground_truth"))
            if not files:
                raise DataError(f"{path}: no .jsonl, .json or .csv benchmark files")
        elif path.is_file():
            files = [path]
        else:
            raise DataError(f"mcq.benchmarks: {spec} is neither a file, a folder nor one of medqa, pubmedqa, "
                            "mmlu_medical")
        out += [(f.stem, read_file(f)) for f in files]
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise DataError(f"mcq.benchmarks: two benchmarks share a name ({names}); rename one file")
    for name, items in out:
        if not items:
            raise DataError(f"benchmark {name} has no items")
    return out
