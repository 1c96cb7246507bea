"""`import evaluate` inside medchat is the library, even from the repo root where evaluate.py lives."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

PROBE = """
import evaluate as plain
from medchat.evaluation._lib import evaluate_library
from medchat.evaluation import metrics
lib = evaluate_library()
import evaluate as after
print(plain.__file__)
print(lib.__file__)
print(after is lib, hasattr(lib, "load"), metrics.load("bleu").__class__.__name__)
"""


def test_the_package_gets_the_library_when_run_from_the_repo_root():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    plain, lib, checks = out.stdout.strip().splitlines()[-3:]
    assert plain == str(ROOT / "evaluate.py")  # the trap is real: a bare import finds the script
    assert lib.endswith("evaluate/__init__.py") and "site-packages" in lib
    assert checks == "True True Bleu"
