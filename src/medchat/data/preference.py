"""Preference pairs (`dataset.schema=preference`): read, split and tokenize them for DPO and ORPO.

A pair becomes the same record SFT rows do, plus the rejected answer:
`{"id", "row", "messages": prompt turns + [the chosen answer], "rejected": str}`. Keeping the chosen side as an
ordinary conversation means split.json, eval.jsonl, evaluate.py and the generation callback treat a preference
run's held-out rows exactly like an SFT run's (the chosen answer is the reference).

A row is either `{"prompt": str | [messages], "chosen": str | [assistant message], "rejected": ...}` or
`{"messages": [... ending with a user turn], "chosen": ..., "rejected": ...}`. A `split` column (train | eval,
what `medchat.make_pairs` writes from an SFT run's own split) fixes the held-out side, so that pairs made from
an SFT run's eval rows never reach DPO training; without one, `dataset.eval_size` splits as for SFT.

Tokens are made here, with the same template rendering and the same loss span (the doctor's turn through its
EOS) as SFT, and handed to TRL already tokenized: both trainers then score exactly the tokens SFT trained.
Answers that do not fit `trainer.max_length` are cut here and counted (TRL would cut them silently).

The end of an answer is scored only where both answers really end. A pair's `eos_rule` (a column
`medchat.make_pairs` writes; absent: both answers are complete texts) says which: `both_eos` scores each
answer through its EOS; `no_eos_scored` scores both answers without their EOS, because one of them (a model
answer cut at max_new_tokens) never produced one. Scoring an EOS after a cut answer would let DPO separate
the pair by its ending rather than its content. A pair whose answer `trainer.max_length` cuts becomes
`no_eos_scored` too (the cut side lost its EOS, so the other side's is not scored either).
"""

from __future__ import annotations

import logging

from medchat.data.prepare import Split, finish_split, sample, split, start_split
from medchat.data.readers import ROLES, DataError, ReadResult, _text, load_rows
from medchat.formatting import prompt_ids, tokenize_conversation

log = logging.getLogger(__name__)

COLUMNS = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "messages": "messages",
           "system": "system", "id": "id", "split": "split", "eos_rule": "eos_rule"}
SPLITS = ("train", "eval")
# both_eos: both answers ended on their own, each scored through its EOS | no_eos_scored: one did not (a model
# answer cut at max_new_tokens), so neither side's EOS is scored
EOS_RULES = ("both_eos", "no_eos_scored")


def _columns(cfg) -> dict[str, str]:
    unknown = set(cfg.columns) - set(COLUMNS)
    if unknown:
        raise DataError(f"dataset.columns: {', '.join(sorted(unknown))} is not a preference column; "
                        f"known: {', '.join(COLUMNS)}")
    return {**COLUMNS, **dict(cfg.columns)}


def _answer(value, source: str, i: int, column: str) -> str:
    """A chosen/rejected answer: a string, or a list holding one assistant message (TRL's conversational form)."""
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
            raise DataError(f"{source} row {i}: column {column!r} must be a string or one assistant message")
        value = value[0].get("content")
    return _text(value)


def _prompt(row: dict, cols: dict, source: str, i: int, system_prompt: str | None) -> list[dict]:
    raw = row.get(cols["prompt"]) if cols["prompt"] in row else row.get(cols["messages"])
    if isinstance(raw, str):
        turns = [{"role": "user", "content": raw.strip()}]
    elif isinstance(raw, list) and all(isinstance(m, dict) for m in raw):
        turns = [{"role": m.get("role"), "content": _text(m.get("content"))} for m in raw]
        bad = [m["role"] for m in turns if m["role"] not in ROLES]
        if bad:
            raise DataError(f"{source} row {i}: unknown role {bad[0]!r} in the prompt (expected {', '.join(ROLES)})")
    else:
        raise DataError(f"{source} row {i}: the prompt must be a string or a list of {{role, content}}")
    if not turns or turns[-1]["role"] != "user":
        raise DataError(f"{source} row {i}: the prompt must end with a user turn (the question both answers answer)")
    system = system_prompt if system_prompt is not None else _text(row.get(cols["system"]))
    if system:
        turns = [{"role": "system", "content": system}] + [m for m in turns if m["role"] != "system"]
    return turns


def normalise_pairs(table, cfg, source: str) -> ReadResult:
    """Rows -> pair records; pairs with an empty question or answer, or two identical answers, are dropped."""
    cols = _columns(cfg)
    names = list(table.column_names)
    if cols["prompt"] not in names and cols["messages"] not in names:
        raise DataError(f"{source} has neither a {cols['prompt']!r} nor a {cols['messages']!r} column "
                        f"(dataset.schema=preference); columns found: {', '.join(names)}. "
                        "Map yours with dataset.columns.prompt=NAME")
    for role in ("chosen", "rejected"):
        if cols[role] not in names:
            raise DataError(f"{source} has no column {cols[role]!r} (dataset.schema=preference reads it as the "
                            f"{role} answer); columns found: {', '.join(names)}. Map yours with "
                            f"dataset.columns.{role}=NAME")
    result = ReadResult(records=[], source=source)
    has_split = cols["split"] in names
    has_rule = cols["eos_rule"] in names
    for i, row in enumerate(table):
        prompt = _prompt(row, cols, source, i, cfg.system_prompt)
        chosen = _answer(row[cols["chosen"]], source, i, cols["chosen"])
        rejected = _answer(row[cols["rejected"]], source, i, cols["rejected"])
        reason = ("empty_question" if not prompt[-1]["content"] else "empty_answer" if not chosen or not rejected
                  else "identical_answers" if chosen == rejected else None)
        if reason:
            result.drop(reason, i)
            continue
        record = {"id": str(row[cols["id"]]) if cols["id"] in names else str(i), "row": i,
                  "messages": prompt + [{"role": "assistant", "content": chosen}], "rejected": rejected}
        if has_split:
            side = row[cols["split"]]
            if side not in SPLITS:
                raise DataError(f"{source} row {i}: column {cols['split']!r} is {side!r}, expected train or eval")
            record["split"] = side
        rule = row[cols["eos_rule"]] if has_rule else "both_eos"
        if rule not in EOS_RULES:
            raise DataError(f"{source} row {i}: column {cols['eos_rule']!r} is {rule!r}, expected one of "
                            f"{', '.join(EOS_RULES)}")
        record["eos_rule"] = rule
        result.records.append(record)
    for reason, count in result.dropped.items():
        log.warning("%s: dropped %d pairs with %s (rows %s...)", source, count, reason.replace("_", " "),
                    result.dropped_rows[reason][:5])
    if not result.records:
        raise DataError(f"{source}: no usable pairs left ({result.dropped})")
    return result


def _fixed_split(read: ReadResult, cfg) -> Split:
    """Keep the file's own train/eval sides (dedup, `n` and overlap dropping still apply, counted: the steps of
    medchat.data.prepare.split, less the split itself)."""
    records, counts, dropped_rows = start_split(read, cfg)
    train_rows = sample([r for r in records if r["split"] == "train"], cfg, counts)
    eval_rows = [r for r in records if r["split"] == "eval"]
    if not train_rows:
        raise DataError(f"{read.source}: no pairs on the train side of its split column")
    return finish_split(read, cfg, train_rows, eval_rows, counts, dropped_rows,
                        what="pairs (split column kept; dataset.eval_size unused)")


def load_pairs(cfg) -> Split:
    """dataset config (schema=preference) -> train/eval pairs, with counts of what was dropped and why."""
    table, source = load_rows(cfg)
    read = normalise_pairs(table, cfg, source)
    return _fixed_split(read, cfg) if read.records and "split" in read.records[0] else split(read, cfg)


def _without_end(answer: list[int], stops: set[int]) -> list[int]:
    """An answer's scored tokens without the turn-ending token(s) it closes with (its EOS)."""
    end = len(answer)
    while end and answer[end - 1] in stops:
        end -= 1
    return answer[:end]


def tokenize_pair(tokenizer, record: dict, prompt_format: str, max_length: int,
                  truncation: str = "keep") -> tuple[dict | None, list[str]]:
    """-> ({"prompt_ids", "chosen_ids", "rejected_ids"} or None if dropped, what happened: the
    medchat.formatting.TRUNCATION_EVENTS names, as for SFT rows, and the eos rule applied, `eos_rule:<rule>`).
    truncation=keep cuts an answer that does not fit (counted; TRL would cut it silently), drop drops the pair.
    Under `no_eos_scored` (the record's rule, or an answer cut here) neither answer ends with an EOS."""
    from medchat.formatting import stop_token_ids

    prompt = record["messages"][:-1]
    p = prompt_ids(tokenizer, prompt, prompt_format)
    out, events = {"prompt_ids": p}, []
    rule = record.get("eos_rule", "both_eos")
    for side, answer in (("chosen", record["messages"][-1]["content"]), ("rejected", record["rejected"])):
        tok = tokenize_conversation(tokenizer, prompt + [{"role": "assistant", "content": answer}], prompt_format)
        ids, mask = tok["input_ids"], tok["assistant_masks"]
        if ids[: len(p)] != p:  # formatting checks chat templates for this; the plain format is built to hold it
            raise DataError(f"row {record['row']} (id {record['id']}): the prompt's tokens are not a prefix of "
                            "prompt + answer, so the answer's tokens cannot be located")
        out[f"{side}_ids"] = [t for t, m in zip(ids[len(p):], mask[len(p):]) if m]  # the answer through its EOS
    longest = len(p) + max(len(out["chosen_ids"]), len(out["rejected_ids"]))
    if longest > max_length:
        if truncation == "drop":
            return None, ["too_long", "dropped_too_long"]
        events = ["too_long", "cut_to_max_length"]
        room = max_length - len(p)
        if room <= 0:  # the prompt alone fills max_length: no answer token left to compare
            return None, events + ["dropped_no_trained_token"]
        eos = tokenizer.eos_token_id
        for side in ("chosen", "rejected"):
            answer = out[f"{side}_ids"]
            if len(answer) > room:
                out[f"{side}_ids"] = answer[:room]
                rule = "no_eos_scored"  # this side's EOS is gone: the other side's must not be scored alone
                if answer[-1] == eos and "cut_answer_lost_eos" not in events:
                    events.append("cut_answer_lost_eos")
    if rule == "no_eos_scored":
        stops = set(stop_token_ids(tokenizer))
        for side in ("chosen", "rejected"):
            out[f"{side}_ids"] = _without_end(out[f"{side}_ids"], stops)
        if not out["chosen_ids"] or not out["rejected_ids"]:
            return None, events + ["dropped_no_trained_token"]
    return out, events + [f"eos_rule:{rule}"]


def tokenize_pairs(records: list[dict], tokenizer, prompt_format: str, max_length: int, truncation: str = "keep"):
    """Records -> (a datasets.Dataset of token ids, counts in data.cache.fit_rows' form: rows, each
    TRUNCATION_EVENTS name, kept; plus `eos_rule:<rule>`, the pairs kept under each rule), so split.json's
    tokenization reads the same for every stage."""
    import datasets

    from medchat.formatting import TRUNCATION_EVENTS

    rows = []
    counts = {"rows": len(records), **{e: 0 for e in TRUNCATION_EVENTS}, **{f"eos_rule:{r}": 0 for r in EOS_RULES}}
    for r in records:
        row, events = tokenize_pair(tokenizer, r, prompt_format, max_length, truncation)
        for e in events:
            counts[e] += 1
        if row is not None:
            rows.append(row)
    counts["kept"] = len(rows)
    if not rows:
        raise DataError(f"no pair fits trainer.max_length={max_length} ({counts}): raise trainer.max_length")
    return datasets.Dataset.from_list(rows), counts
