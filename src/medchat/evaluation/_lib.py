"""The `evaluate` library, never the repository's own `evaluate.py`.

`python evaluate.py ...` and `python -m pytest` started from the repository root put that root on
sys.path, where a plain `import evaluate` finds the entry-point script instead of the library. medchat
therefore gets the library only through `evaluate_library()`, which imports it with such directories
left out of the search path and leaves it in sys.modules, so the metric scripts that `evaluate.load`
runs (and which say `import evaluate`) get the library too.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def _is_library(module) -> bool:
    return hasattr(module, "__path__") and hasattr(module, "load")


def _shadows(entry) -> bool:
    try:
        return (Path(str(entry) or ".") / "evaluate.py").is_file()
    except OSError:
        return False


def evaluate_library():
    """The Hugging Face `evaluate` package, whatever the working directory and sys.path hold."""
    module = sys.modules.get("evaluate")
    if module is not None and _is_library(module):
        return module
    saved_path = sys.path[:]
    shadow = sys.modules.pop("evaluate", None)  # the script, if something imported it under that name
    sys.path[:] = [entry for entry in sys.path if not _shadows(entry)]
    try:
        module = importlib.import_module("evaluate")
    except ImportError as e:
        if shadow is not None:
            sys.modules["evaluate"] = shadow
        raise ImportError("medchat's evaluation needs the `evaluate` library: pip install 'evaluate>=0.4.6'") from e
    finally:
        sys.path[:] = saved_path
    if not _is_library(module):
        raise ImportError(f"`import evaluate` found {getattr(module, '__file__', module)}, not the library")
    return module
