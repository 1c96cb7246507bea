"""Plumbing shared by the small Hydra apps that use a finished run (chat, app, export).

Each app has a typed schema (unknown or mistyped keys fail with the key's name) stored in Hydra's
ConfigStore together with the Hydra settings that keep it quiet: no output dir, no `.hydra/` copy, no log
file and no logging config of Hydra's, so `chat`'s stdout carries the answer and nothing else.
Errors about the user's input are printed as one line naming the thing, without a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from typing import Callable

from hydra.core.config_store import ConfigStore

from medchat.config import ConfigError
from medchat.config_checks import check_keys

QUIET_HYDRA = {"run": {"dir": "."}, "output_subdir": None}


def store_app_config(name: str, schema: type, usage: str | None = None) -> None:
    """Register `name` (its schema + quiet Hydra settings); `usage` (the module docstring) becomes --help."""
    cs = ConfigStore.instance()
    cs.store(name=f"{name}_schema", node=schema)
    hydra_node = dict(QUIET_HYDRA)
    if usage:
        hydra_node["help"] = {"template": usage.strip() + "\n\n== Settings (key=value) ==\n$CONFIG"}
    cs.store(name=name, node={
        "defaults": [f"{name}_schema", "_self_",
                     {"override hydra/job_logging": "none"}, {"override hydra/hydra_logging": "none"}],
        "hydra": hydra_node,
    })


def hydra_quote(text: str) -> str:
    """A Hydra override value that is exactly `text`: a quoted string, its quotes and backslashes escaped."""
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)  # backslashes before a quote are escapes
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)  # not an interpolation
    return "'" + text.replace("'", "\\'") + "'"


def quote_free_text(keys: tuple[str, ...], argv: list[str] | None = None) -> list[str]:
    """Let `prompt=I have a cough, and it's worse at night.` through Hydra's override grammar, which would
    otherwise read the comma as a sweep and choke on the apostrophe. Values already quoted are left alone."""
    argv = sys.argv if argv is None else argv
    for i, arg in enumerate(argv[1:], start=1):
        key, sep, value = arg.partition("=")
        if sep and key in keys and not value.startswith(("'", '"')):
            argv[i] = f"{key}={hydra_quote(value)}"
    return argv


def quiet_libraries(verbose: bool) -> None:
    """Progress bars and deprecation chatter on stderr only when asked for."""
    from medchat import console

    console.install()  # the known-harmless third-party lines (bitsandbytes' kernels-community notice, ...)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def user_errors(prog: str, schema: type | None = None) -> Callable:
    """Turn bad input (ConfigError, missing files) into `prog: error: ...` and exit status 2. With `schema`,
    the config's keys are checked against it first (Hydra's `+key=` force-adds a misspelt key past struct mode)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                if schema is not None and args:
                    check_keys(args[0], schema, prog)
                return fn(*args, **kwargs)
            except (ConfigError, FileNotFoundError, FileExistsError) as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                sys.exit(2)

        return inner

    return wrap
