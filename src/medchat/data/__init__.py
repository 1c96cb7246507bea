"""Data: read rows (file or Hub), normalise them to conversations, clean and split them."""

from medchat.data.prepare import Split, split
from medchat.data.readers import DataError, load_rows, normalise


def load_split(cfg) -> Split:
    """dataset config -> train/eval conversations, with counts of what was dropped and why."""
    table, source = load_rows(cfg)
    return split(normalise(table, cfg, source), cfg)


__all__ = ["DataError", "Split", "load_split"]
