"""The layout's promises: no import circle inside medchat; finished runs (config, adapter, split.json,
eval.jsonl) are opened by medchat.runs only (and their models built by medchat.run_models); only the pipeline,
the plan, the config checks and the sweep launcher take the whole composed training config."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = SRC / "medchat"
# evaluate-library metric scripts: loaded by path through evaluate.load, not importable as modules
METRIC_SCRIPTS = {"bleu", "rouge", "meteor", "bertscore"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def module_level_imports(name: str, path: Path) -> set[str]:
    """medchat modules imported when `name` is imported (imports inside functions run later and are left out)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []) or [])

    visit(ast.parse(path.read_text()).body)
    return {m for m in found if m in MODULES and m != name}


def test_no_import_cycle_inside_medchat():
    graph = {name: module_level_imports(name, path) for name, path in MODULES.items()}
    assert graph["medchat.pipeline"] >= {"medchat.plan", "medchat.training"}  # the walk sees real imports
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            dfs(name)


def test_every_module_imports():
    for name in MODULES:
        if name.rpartition(".")[2] in METRIC_SCRIPTS and ".metrics." in name:
            continue
        importlib.import_module(name)


# Strings and names that mean "reading a finished run's config or adapter"; only runs.py (opening a run dir) and
# run_models.py (building models from it: the adapter's config, PeftModel) may use them. pipeline.py writes
# RUN/config.yaml (through attempt.py, which writes a run's first-attempt files atomically) and
# evaluation/outputs.py its own RUN/eval/config.yaml.
WRITERS = {"medchat.runs", "medchat.run_models", "medchat.pipeline", "medchat.attempt", "medchat.evaluation.outputs"}


# A run's split files: runs.py reads them (Run.split, Run.eval_rows), attempt.py writes them. Elsewhere the
# names may appear as labels ("split": "eval.jsonl" in metrics.json), never as a path being opened.
SPLIT_FILES = {"split.json", "eval.jsonl"}
SPLIT_WRITERS = {"medchat.runs", "medchat.attempt"}
PATH_CALLS = {"open", "Path", "joinpath", "read_text", "read_conversations", "load"}


def _opens_split_files(tree: ast.AST) -> list[str]:
    """`X / "split.json"`, `open("eval.jsonl")`, `Path(..., "split.json")`: a split file used as a path."""
    hits = []
    for node in ast.walk(tree):
        operands = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            operands = [node.left, node.right]
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            operands = node.args if func in PATH_CALLS else []
        for operand in operands:
            if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                if operand.value in SPLIT_FILES or any(operand.value.endswith("/" + f) for f in SPLIT_FILES):
                    hits.append(repr(operand.value))
    return hits


def _reads_runs(tree: ast.AST) -> list[str]:
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            s = node.value
            if s == "config.yaml" or s.endswith(".hydra/config.yaml") or "adapter_config.json" in s:
                hits.append(repr(s))
        elif isinstance(node, ast.ImportFrom) and node.module == "peft":
            hits += [f"from peft import {a.name}" for a in node.names if a.name == "PeftModel"]
        elif isinstance(node, ast.Attribute) and node.attr == "PeftModel":
            hits.append("peft.PeftModel")
    return hits


def test_only_runs_opens_a_finished_run():
    offenders = {name: hits for name, path in MODULES.items() if name not in WRITERS
                 and (hits := _reads_runs(ast.parse(path.read_text())))}
    assert offenders == {}
    assert _reads_runs(ast.parse((PACKAGE / "runs.py").read_text()))  # the check would see a reader


def test_only_runs_reads_a_runs_split_and_eval_rows():
    offenders = {name: hits for name, path in MODULES.items() if name not in SPLIT_WRITERS
                 and (hits := _opens_split_files(ast.parse(path.read_text())))}
    assert offenders == {}
    # the check would see a reader: what heldout.py and modelcard.py did before they asked medchat.runs
    assert sorted(_opens_split_files(ast.parse('p = run_dir / "split.json"\nPath(run_dir, "eval.jsonl").read_text()'
                                               '\nopen("runs/x/eval.jsonl")'))) == \
        ["'eval.jsonl'", "'runs/x/eval.jsonl'", "'split.json'"]
    assert _opens_split_files(ast.parse('metrics.get("split") == "eval.jsonl"')) == []  # a label is not a read
    assert _opens_split_files(ast.parse((PACKAGE / "attempt.py").read_text()))  # the writer is seen


class Opened(Exception):
    """Raised by the spy: the entry point got as far as opening the run through medchat.runs."""


def test_every_entry_point_opens_its_run_through_runs(trained_run, monkeypatch):
    from medchat import app, chat, export, modelcard, runs
    from medchat.evaluation.runner import run as evaluate
    from medchat.sweeps import postmortem
    from test_evaluate_cli import compose_eval

    opened = []

    def spy(run_dir):
        opened.append(Path(run_dir))
        raise Opened

    monkeypatch.setattr(runs, "config_file", spy)
    entry_points = {
        "chat": lambda: chat.run(OmegaConf.structured(chat.ChatConfig(run_dir=str(trained_run), prompt="hi"))),
        "app": lambda: app.run(OmegaConf.structured(app.AppConfig(run_dir=str(trained_run), port=0))),
        "export": lambda: export.run(OmegaConf.structured(export.ExportConfig(run_dir=str(trained_run)))),
        "evaluate": lambda: evaluate(compose_eval(f"run_dir={trained_run}")),
        "model card": lambda: modelcard.build_card(trained_run, "adapter"),
        "post-mortem": lambda: postmortem._close(trained_run, "abc123", "killed"),
    }
    for name, call in entry_points.items():
        before = len(opened)
        with pytest.raises(Opened):
            call()
        assert opened[before:] == [trained_run], name


# Only these take the whole composed training config; every other function gets the sections it uses (issue 20).
WHOLE_CONFIG_TAKERS = {"medchat/pipeline.py", "medchat/plan.py", "medchat/config_checks.py"}
WHOLE_CONFIG_TAKER_DIRS = ("medchat/sweeps/",)  # the sweep launcher's machinery


def _sections_read(fn: ast.AST, name: str, class_attrs: dict[str, set[str]]) -> set[str]:
    """Attributes read on parameter `name` inside `fn` (name.X), plus those read on self.Y where fn stores it as Y."""
    read = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == name}
    for n in ast.walk(fn):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Name) and n.value.id == name:
            for target in n.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                    read |= class_attrs.get(target.attr, set())
    return read


def test_no_function_outside_the_pipeline_takes_the_whole_training_config():
    from medchat.config import Config
    from medchat.evaluation.config import EvaluateConfig

    sections = {f.name for f in dataclasses.fields(Config)}
    # evaluate.py's own composed config also has `model` and `quant` sections: reading only those is not this
    evaluate_sections = {f.name for f in dataclasses.fields(EvaluateConfig)}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in WHOLE_CONFIG_TAKERS or rel.startswith(WHOLE_CONFIG_TAKER_DIRS):
            continue
        tree = ast.parse(path.read_text())
        for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)] + [tree]:
            # self.X.Y read anywhere in the class: what a parameter stored as self.X is used for
            class_attrs: dict[str, set[str]] = {}
            for n in ast.walk(cls):
                if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
                        and isinstance(n.value.value, ast.Name) and n.value.value.id == "self"):
                    class_attrs.setdefault(n.value.attr, set()).add(n.attr)
            for fn in ast.walk(cls):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for arg in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs:
                    annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                    used = _sections_read(fn, arg.arg, class_attrs if cls is not tree else {}) & sections
                    if (len(used) >= 2 and used - evaluate_sections) or annotation.rsplit(".", 1)[-1] == "Config":
                        offenders.append(f"{rel}:{fn.lineno} {fn.name}({arg.arg}) reads {sorted(used)}")
    assert not sorted(set(offenders)), "\n".join(sorted(set(offenders)))
