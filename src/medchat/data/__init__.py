"""Data: read rows (file or Hub), normalise them to conversations, clean and split them."""

from medchat.data.prepare import Split, split
from medchat.data.readers import DataError, load_rows, normalise


def load_split(cfg) -> Split:
    """dataset config -> train/eval conversations, with counts of what was dropped and why."""
    if cfg.sources:  # several datasets mixed (medchat.data.mixture), counted per source
        from medchat.data.mixture import count_by_source, read_sources

        read = read_sources(cfg)
        result = split(read, cfg)
        count_by_source(result, read)
        return result
    table, source = load_rows(cfg)
    return split(normalise(table, cfg, source), cfg)


__all__ = ["DataError", "Split", "load_split"]
