"""Read rows from a local file or the Hub and normalise each to a conversation.

Every schema becomes the same record: `{"id", "row", "messages": [{"role", "content"}, ...]}`, where
`row` is the row's 0-based position in the source, so that an error or a dropped row can be named.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from medchat.console import datasets_progress
from medchat.data.errors import DataError
from medchat.data.sharegpt import to_messages

log = logging.getLogger(__name__)

# Column names each schema reads, per role, unless dataset.columns overrides them.
SCHEMA_COLUMNS = {
    "instruction": {"question": "input", "answer": "output", "system": "instruction"},
    "qa": {"question": "question", "answer": "answer"},
    "patient_doctor": {"question": "Patient", "answer": "Doctor"},
    "messages": {"messages": "messages"},
    "sharegpt": {"messages": "conversations"},
}
FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
ROLES = ("system", "user", "assistant")


@dataclass
class ReadResult:
    records: list[dict]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)  # reason -> first few row numbers
    fixed: dict[str, int] = field(default_factory=dict)  # rows kept after a repair, by repair
    sources: dict[str, dict] = field(default_factory=dict)  # per-source counts of a mixture (data.mixture)

    def drop(self, reason: str, row: int) -> None:
        """Count a dropped row under `reason`, keeping the first 20 row numbers (split.json)."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        rows = self.dropped_rows.setdefault(reason, [])
        if len(rows) < 20:
            rows.append(row)


def resolve_path(path: str) -> Path:
    """`medchat:<rel>` names a file shipped inside the package; anything else is a filesystem path."""
    if path.startswith("medchat:"):
        return Path(str(resources.files("medchat").joinpath(path[len("medchat:") :])))
    return Path(path).expanduser()


def _check_utf8(file: Path) -> None:
    if file.suffix == ".parquet":
        return
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{file} is not UTF-8 (byte {e.start}, line {line}: {data[e.start:e.start + 4]!r}); "
            "re-encode it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _load_file(path: Path, fmt: str):
    import datasets

    if not path.exists():
        raise DataError(f"dataset file not found: {path} (set dataset.path)")
    files = sorted(p for p in path.iterdir() if p.suffix in FORMATS) if path.is_dir() else [path]
    if not files:
        raise DataError(f"no .json/.jsonl/.csv/.parquet files in {path}")
    kinds = {FORMATS.get(f.suffix) for f in files} if fmt == "auto" else {"json" if fmt == "jsonl" else fmt}
    if None in kinds or len(kinds) != 1:
        raise DataError(f"cannot tell the format of {path}: set dataset.format to json, jsonl, csv or parquet")
    for f in files:
        _check_utf8(f)
    try:
        with datasets_progress(nbytes=sum(f.stat().st_size for f in files)):  # no progress bars for a small file
            return datasets.load_dataset(kinds.pop(), data_files=[str(f) for f in files], split="train")
    except Exception as e:  # datasets' parse errors do not say which file
        raise DataError(f"could not parse {path}: {e}") from e


def load_rows(cfg) -> tuple[Any, str]:
    """The raw table (a datasets.Dataset) and a name for it, from dataset.path or dataset.hub_id."""
    if cfg.path:
        path = resolve_path(cfg.path)
        return _load_file(path, cfg.format), str(path)
    import datasets

    # datasets.load_dataset's own names: `subset` is its `name`; `hub_id` may also be a builder (json, csv,
    # parquet) with `data_files` pointing at local or hf:// files
    kwargs = {"name": getattr(cfg, "subset", None), "revision": getattr(cfg, "revision", None),
              "data_files": _plain(getattr(cfg, "data_files", None)), "num_proc": getattr(cfg, "num_proc", None)}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    where = f"hub:{cfg.hub_id}" + "".join(f" {k}={kwargs[k]}" for k in ("name", "revision", "data_files") if k in kwargs)
    try:
        table = datasets.load_dataset(cfg.hub_id, split=cfg.hub_split, **kwargs)
    except (FileNotFoundError, ValueError) as e:  # a wrong split, subset or data_files: say which dataset
        raise DataError(f"could not load {where} split={cfg.hub_split}: {e}") from e
    return table, where


def _plain(value):
    """OmegaConf lists/dicts -> plain Python for datasets."""
    if value is None or isinstance(value, (str, list, dict)):
        return value
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _columns_for(cfg) -> dict[str, str]:
    return {**SCHEMA_COLUMNS[cfg.schema], **dict(cfg.columns)}


def check_columns(column_names: Iterable[str], cfg, source: str) -> dict[str, str]:
    columns = _columns_for(cfg)
    present = list(column_names)
    for role, name in columns.items():
        if role == "system" and name not in present:  # optional: a file may carry no system text
            continue
        if name not in present:
            raise DataError(
                f"{source} has no column {name!r} (dataset.schema={cfg.schema} reads it as the {role}); "
                f"columns found: {', '.join(present)}. Map yours with dataset.columns.{role}=NAME"
            )
    return columns


def _pair_messages(row: dict, columns: dict, system_prompt: str | None) -> list[dict]:
    system = system_prompt if system_prompt is not None else _text(row.get(columns.get("system", ""), ""))
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [
        {"role": "user", "content": _text(row[columns["question"]])},
        {"role": "assistant", "content": _text(row[columns["answer"]])},
    ]


def _conversation(row: dict, columns: dict, system_prompt: str | None, source: str, i: int,
                  fixes: dict[str, int]) -> list[dict]:
    raw = row[columns["messages"]]
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise DataError(f"{source} row {i}: column {columns['messages']!r} must be a list of {{role, content}}")
    system, turns = [], []
    for m in raw:
        role = m.get("role")
        if role not in ROLES:
            raise DataError(f"{source} row {i}: unknown role {role!r} (expected one of {', '.join(ROLES)})")
        content = _text(m.get("content"))
        if role == "system":
            system.append(content)
        elif turns and turns[-1]["role"] == role:  # two user (or doctor) messages in a row: one turn
            turns[-1]["content"] += "\n" + content
            fixes["merged_consecutive_turns"] = fixes.get("merged_consecutive_turns", 0) + 1
        else:
            turns.append({"role": role, "content": content})
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
        fixes["trimmed_leading_assistant_turns"] = fixes.get("trimmed_leading_assistant_turns", 0) + 1
    while turns and turns[-1]["role"] != "assistant":  # a last question nobody answered: nothing to learn
        turns.pop()
        fixes["trimmed_unanswered_last_turns"] = fixes.get("trimmed_unanswered_last_turns", 0) + 1
    if system_prompt is not None:
        system = [system_prompt]
    head = [{"role": "system", "content": "\n".join(system)}] if any(system) else []
    return head + turns


def normalise(table, cfg, source: str) -> ReadResult:
    """Rows -> conversations; rows with an empty question or answer are dropped and counted."""
    columns = check_columns(table.column_names, cfg, source)
    split_by = getattr(cfg, "split_by", None)
    if split_by and split_by not in table.column_names:
        raise DataError(f"{source} has no column {split_by!r} to group the split by (dataset.split_by); "
                        f"columns found: {', '.join(table.column_names)}")
    result = ReadResult(records=[], source=source)
    id_column = columns.get("id")
    for i, row in enumerate(table):
        if cfg.schema == "sharegpt":
            row = {**row, columns["messages"]: to_messages(row[columns["messages"]], f"{source} row {i}",
                                                           columns["messages"])}
        if cfg.schema in ("messages", "sharegpt"):
            messages = _conversation(row, columns, cfg.system_prompt, source, i, result.fixed)
        else:
            messages = _pair_messages(row, columns, cfg.system_prompt)
        empty = [m["role"] for m in messages if m["role"] != "system" and not m["content"]]
        if not any(m["role"] == "assistant" for m in messages):
            empty = ["assistant"]
        if empty:
            result.drop(f"empty_{'question' if empty[0] == 'user' else 'answer'}", i)
            continue
        rid = str(row[id_column]) if id_column else str(i)
        record = {"id": rid, "row": i, "messages": messages}
        if split_by:
            if row[split_by] is None or str(row[split_by]).strip() == "":
                raise DataError(f"{source} row {i}: empty {split_by!r}, which dataset.split_by groups the split by")
            record["group"] = str(row[split_by])
        result.records.append(record)
    for reason, count in result.dropped.items():
        log.warning("%s: dropped %d rows with %s (rows %s...)", source, count, reason.replace("_", " "),
                    result.dropped_rows[reason][:5])
    for fix, count in result.fixed.items():
        log.info("%s: %s in %d rows", source, fix.replace("_", " "), count)
    if not result.records:
        raise DataError(f"{source}: no usable rows left ({result.dropped}); check dataset.columns and the file")
    return result
