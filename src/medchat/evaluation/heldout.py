"""The rows an evaluation answers: a run's held-out conversations, checked against its split manifest.

`RUN/eval.jsonl` holds the conversations the run set aside and `RUN/split.json` the hashes of both sides
of its split; both are read through medchat.runs (Run.eval_rows, Run.split), the one module that opens
runs. Every row evaluated must be one of the run's eval rows and none of its training rows; anything else (an edited eval.jsonl, an empty split) is an error that names the file and row.

`rows.path=FILE` scores another dataset's rows instead (read by the training readers, any schema), e.g.
out of domain; with a run, a row whose conversation was in its training split is refused the same way.
"""

from __future__ import annotations

from medchat.data import DataError
from medchat.data.prepare import conversation_hash, question_hash
from medchat.runs import Run


def other_rows(rows_cfg, run: Run | None) -> tuple[list[dict], str]:
    """rows.path's conversations (a seeded subset of rows.n) -> (records, a description of where they came from).

    With a run: any row that was one of its training conversations is an error naming the row."""
    import random
    from types import SimpleNamespace

    from medchat.data.readers import load_rows, normalise

    cfg = SimpleNamespace(path=rows_cfg.path, format=rows_cfg.format, hub_id=None, schema=rows_cfg.schema,
                          columns=dict(rows_cfg.columns), system_prompt=rows_cfg.system_prompt)
    table, source = load_rows(cfg)
    records = normalise(table, cfg, source).records
    if rows_cfg.n is not None:
        if rows_cfg.n > len(records):
            raise DataError(f"rows.n={rows_cfg.n} but {source} has only {len(records)} usable rows")
        picked = sorted(random.Random(rows_cfg.seed).sample(range(len(records)), rows_cfg.n))
        records = [records[i] for i in picked]
    if run is not None:
        why = ": its training rows are unknown, so rows from another file cannot be checked against them"
        train, _ = run.split_hashes(why)
        train_questions, _ = run.split_questions(why)
        # by question too: the same question under another system prompt (rows.system_prompt,
        # +rows.columns.system=none) or with another answer is still a training row
        leaked = [r["row"] for r in records if conversation_hash(r) in train or question_hash(r) in train_questions]
        if leaked:
            raise DataError(f"{source}: {len(leaked)} of the rows to score were training rows of {run.dir} (rows "
                            f"{leaked[:10]}{'...' if len(leaked) > 10 else ''}): refusing to score them")
    return records, source


def heldout_rows(run: Run) -> list[dict]:
    """The run's eval rows, each verified to be held out (in split.json's eval side, not its train side)."""
    rows = run.eval_rows()
    train_hashes, eval_hashes = run.split_hashes()
    if not rows:
        raise DataError(
            f"{run.eval_file} is empty: the run set no rows aside (dataset.eval_size=0?), so nothing held out can be "
            "evaluated. Train with dataset.eval_size > 0"
        )
    for n, record in enumerate(rows, start=1):
        h = conversation_hash(record)
        if h in train_hashes:
            raise DataError(f"{run.eval_file} line {n} (id {record['id']}) is a training row of this run: refusing to "
                            "score it")
        if h not in eval_hashes:
            raise DataError(f"{run.eval_file} line {n} (id {record['id']}) is not among split.json's eval rows: "
                            "was eval.jsonl edited?")
    return rows


def context_and_reference(record: dict) -> tuple[list[dict], str]:
    """The conversation before its last doctor turn (the prompt) and that turn (the reference answer)."""
    messages = record["messages"]
    if not messages or messages[-1]["role"] != "assistant" or len(messages) < 2 or messages[-2]["role"] != "user":
        raise DataError(f"row {record.get('row')} (id {record.get('id')}): a conversation must end with a user turn "
                        "followed by the doctor's answer")
    return messages[:-1], messages[-1]["content"]
