"""docs/reliability.md's tables name real tests: every `tests/FILE.py::test_name` exists, so the table cannot drift."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

DOC = ROOT / "docs" / "reliability.md"


def _named_tests() -> list[tuple[str, str]]:
    return re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC.read_text())


def test_every_test_the_reliability_table_names_exists():
    named = _named_tests()
    assert len(named) >= 40
    defined: dict[str, set[str]] = {}
    for path, name in named:
        if path not in defined:
            tree = ast.parse((ROOT / path).read_text())
            defined[path] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in defined[path], f"docs/reliability.md names {path}::{name}, which does not exist"


def test_the_table_lists_at_least_twenty_kinds_of_bad_input_across_every_entry_point():
    rows = [line for line in DOC.read_text().splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) >= 20
    points = {p.strip() for r in rows for p in r.split("|")[2].split(",")}
    assert {"train", "evaluate", "sweeps", "chat", "export", "app"} <= points
    assert all("`tests/" in r for r in rows)  # every kind has its test
