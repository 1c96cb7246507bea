"""A cache of the tokenized train/eval sets, keyed by everything that changes the token ids and masks.

Tokenizing is the same work for every job of a sweep that varies only LoRA or trainer knobs, and for a
large dataset it takes minutes. The key hashes the conversations in split order (their content hashes,
so a changed row or a different split is a different key), the tokenizer (its serialized vocabulary and
merges, special tokens and chat template), the prompt format, trainer.max_length and the source of
medchat.formatting itself, so a change to the masking code can never reuse stale masks, the installed
versions of the libraries that turn a conversation into token ids (TOKEN_LIBRARIES: transformers renders the
chat template with jinja2 and runs the tokenizers/sentencepiece/tiktoken backends; an upgrade that renders or
splits differently must not reuse stale ids), and
trainer.truncation (rows over max_length are cut or dropped here, before TRL sees them: fit_rows). An
entry keeps the fitted rows and their truncation counts, so a cache hit reports the same counts as the
run that tokenized.

Where: `<cache dir>/<key>/`, the cache dir being the run plan's choice (medchat.plan.tokenized_cache_dir): inside a
sweep `<sweep dir>/.tokenized/` (shared by the sweep's jobs, deleted with it), otherwise the medchat cache
(`$MEDCHAT_CACHE`, default ~/.cache/medchat) under `tokenized/`. Each
entry is written to a temporary folder and renamed into place, so jobs running side by side never read a
half-written one: the first to finish wins, the other keeps its own copy in memory.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
from importlib import metadata
from pathlib import Path

from medchat.console import datasets_progress
from medchat.data.prepare import conversation_hash

log = logging.getLogger(__name__)


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([type(tokenizer).__name__, tokenizer.chat_template, tokenizer.bos_token_id,
                         tokenizer.eos_token_id, tokenizer.pad_token_id, str(tokenizer.special_tokens_map)],
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# Every library whose version can change the token ids or masks of a rendered conversation: transformers
# (apply_chat_template, {% generation %} masks, the slow/fast tokenizer classes), jinja2 (renders the chat
# template), and the tokenizer backends (tokenizers: fast BPE/WordPiece/Unigram; sentencepiece and tiktoken:
# slow and tiktoken-based tokenizers). One that is not installed is recorded as absent.
TOKEN_LIBRARIES = ("transformers", "tokenizers", "jinja2", "sentencepiece", "tiktoken")


def library_versions() -> dict[str, str]:
    """{name: installed version or "absent"} for TOKEN_LIBRARIES (part of the cache key)."""
    out = {}
    for name in TOKEN_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def cache_key(train: list[dict], eval_rows: list[dict], tokenizer, prompt_format: str, max_length: int,
              truncation: str = "keep") -> str:
    from medchat import formatting

    h = hashlib.sha256()
    for part in (
        json.dumps([[conversation_hash(r) for r in train], [conversation_hash(r) for r in eval_rows]]),
        tokenizer_fingerprint(tokenizer),
        prompt_format,
        str(max_length),
        truncation,
        inspect.getsource(formatting),
        inspect.getsource(fit_rows),
        json.dumps(library_versions(), sort_keys=True),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def tokenize_rows(records: list[dict], tokenizer, prompt_format: str, num_proc: int | None):
    import datasets

    from medchat.formatting import tokenize_conversation

    if not num_proc or num_proc <= 1 or len(records) < 2 * num_proc:
        return datasets.Dataset.from_list([tokenize_conversation(tokenizer, r["messages"], prompt_format)
                                           for r in records])
    table = datasets.Dataset.from_list([{"messages": r["messages"]} for r in records])
    return table.map(lambda row: tokenize_conversation(tokenizer, row["messages"], prompt_format),
                     remove_columns=["messages"], num_proc=num_proc, desc="tokenizing")


def fit_rows(ds, max_length: int, truncation: str, eos_id: int | None, num_proc: int | None = None):
    """Cut or drop the rows over max_length (medchat.formatting.fit_to_length); -> (dataset, counts)."""
    from medchat.formatting import TRUNCATION_EVENTS, fit_to_length

    def fit(row):
        fitted, events = fit_to_length(row, max_length, truncation, eos_id)
        kept = fitted or row  # a dropped row keeps its columns until the filter below removes it
        return {"input_ids": kept["input_ids"], "assistant_masks": kept["assistant_masks"], "_keep": fitted is not None,
                **{f"_{e}": int(e in events) for e in TRUNCATION_EVENTS}}

    parallel = num_proc if num_proc and num_proc > 1 and len(ds) >= 2 * num_proc else None
    marked = ds.map(fit, num_proc=parallel, desc="fitting to max_length") if len(ds) else ds
    counts = {"rows": len(ds), **{e: int(sum(marked[f"_{e}"])) if len(ds) else 0 for e in TRUNCATION_EVENTS}}
    if len(ds):
        marked = marked.filter(lambda keep: keep, input_columns="_keep", num_proc=parallel)
        marked = marked.remove_columns(["_keep", *(f"_{e}" for e in TRUNCATION_EVENTS)])
    counts["kept"] = len(marked)
    return marked, counts


def tokenized(split, tokenizer, prompt_format: str, max_length: int, cache_dir: Path, *, truncation: str = "keep",
              use_cache: bool = True, num_proc: int | None = None):
    """-> (train dataset, eval dataset or None, {"train": counts, "eval": counts} of what was cut or dropped,
    {"key", "path", "hit", "enabled"}), from the cache (entries under `cache_dir`, which the run plan chose:
    medchat.plan.tokenized_cache_dir) when it holds them."""
    from medchat.formatting import check_can_tokenize

    check_can_tokenize(tokenizer, prompt_format)
    with datasets_progress(rows=len(split.train) + len(split.eval)):  # no progress bars for a small split
        return _tokenized(split, tokenizer, prompt_format, max_length, cache_dir, truncation, use_cache, num_proc)


def _tokenized(split, tokenizer, prompt_format, max_length, cache_dir, truncation, use_cache, num_proc):
    import datasets

    from medchat.formatting import report_truncation

    key = cache_key(split.train, split.eval, tokenizer, prompt_format, max_length, truncation)
    where = Path(cache_dir) / key
    info = {"key": key, "path": str(where), "hit": False, "enabled": use_cache}
    if use_cache and (where / "done").exists():
        train = datasets.load_from_disk(str(where / "train"))
        evals = datasets.load_from_disk(str(where / "eval")) if (where / "eval").exists() else None
        counts = json.loads((where / "tokenization.json").read_text())
        info["hit"] = True
        log.info("tokenized data from the cache %s", where)
    else:
        counts = {}
        train, counts["train"] = fit_rows(tokenize_rows(split.train, tokenizer, prompt_format, num_proc),
                                          max_length, truncation, tokenizer.eos_token_id, num_proc)
        evals = None
        if split.eval:
            evals, counts["eval"] = fit_rows(tokenize_rows(split.eval, tokenizer, prompt_format, num_proc),
                                             max_length, truncation, tokenizer.eos_token_id, num_proc)
    for name, counted in counts.items():  # the same log, warning and refusal on a hit as on a miss
        report_truncation(name, counted, max_length, truncation)
    if use_cache and not info["hit"] and int(os.environ.get("RANK", "0")) == 0:
        _store(where, train, evals, counts)
    return train, evals, counts, info


def _store(where: Path, train, evals, counts: dict) -> None:
    tmp = where.with_name(f"{where.name}.tmp-{os.getpid()}")
    try:
        train.save_to_disk(str(tmp / "train"))
        if evals is not None:
            evals.save_to_disk(str(tmp / "eval"))
        (tmp / "tokenization.json").write_text(json.dumps(counts) + "\n")
        (tmp / "done").write_text("")
        tmp.rename(where)
        log.info("tokenized data cached in %s", where)
    except OSError as e:  # another job stored the same entry first, or the disk is full: not fatal
        log.info("tokenized data not cached in %s (%s)", where, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
