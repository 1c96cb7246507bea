"""The one place that lists the third-party console lines medchat hides, each known to be harmless, and why.

medchat fixes the warnings its own calls cause where they are caused (e.g. training.checkpointing_arguments
passes transformers' new `activation_checkpointing*` names). What is left here comes from other libraries,
says nothing the user can act on, and would bury the lines that matter (the plan, the data counts, the
held-out loss). Everything else, every FutureWarning not matched below included, still prints.

`install()` is called by the entry points (train.py, evaluate.py, `python -m medchat.plan`, the small Hydra
apps) before the libraries are imported; it is idempotent.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

# (logger, text in the message, why it is harmless)
HARMLESS_LOG_LINES: tuple[tuple[str, str, str], ...] = (
    ("bitsandbytes.backends.cpu.ops", "from kernels-community",
     "bitsandbytes (0.49+) tries, at every import, to fetch an optional faster CPU 4-bit kernel from the Hub's "
     "kernels-community repository; when the publisher trust check fails or the Hub is offline it says so and "
     "uses its own CPU kernel, with the same results"),
    ("kernels._internals.hf_hub", "Skipping publisher trust check",
     "the same optional kernel fetch as above, announced by the `kernels` package when the Hub is offline"),
)

# (category, regex the message starts with, why it is harmless)
HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated",
     "PEFT's get_peft_model and TRL read PreTrainedModel.is_gradient_checkpointing, which transformers 5.2x "
     "renamed is_activation_checkpointing; the alias works until transformers 6 and medchat never reads it"),
)

# `datasets` draws a progress bar for every map, filter, save and load, also for 96 rows done in a
# millisecond. Below these sizes they are hidden; a large dataset's tokenizing still shows its progress.
SMALL_ROWS = 10_000
SMALL_FILE_BYTES = 20 * 2**20


class _DropKnownLines(logging.Filter):
    def __init__(self, texts: tuple[str, ...]):
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


_installed = False


def install() -> None:
    """Hide the lines listed above (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, text, _why in HARMLESS_LOG_LINES:
        by_logger[name] = by_logger.get(name, ()) + (text,)
    for name, texts in by_logger.items():
        logging.getLogger(name).addFilter(_DropKnownLines(texts))
    for category, pattern, _why in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)


@contextmanager
def datasets_progress(rows: int | None = None, nbytes: int | None = None):
    """`datasets` progress bars hidden inside the block when it handles fewer than SMALL_ROWS rows (or a file
    under SMALL_FILE_BYTES); shown as before otherwise."""
    small = (rows is not None and rows < SMALL_ROWS) or (nbytes is not None and nbytes < SMALL_FILE_BYTES)
    if not small:
        yield
        return
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
