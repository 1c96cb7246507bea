"""Make DPO/ORPO preference pairs offline from a finished SFT run's own rows.

    python -m medchat.make_pairs run_dir=runs/SFT out=pairs/medquad.jsonl               # rejected: the SFT model
    python -m medchat.make_pairs run_dir=runs/SFT out=pairs.jsonl answers_from=base max_new_tokens=96 train_limit=200

For every row of the run's split, chosen = the doctor's answer and rejected = the model's own greedy answer to
the same prompt (medchat.evaluation.generation, batched). Each pair keeps the side of the split its row was on
(`split: train | eval`): pairs from the run's held-out rows are held out from DPO too. The run's training rows
are re-read from its dataset config and must reproduce its split.json fingerprint (else the data changed).
Beside OUT, OUT.provenance.json records the model, run, settings and source row ids.
Keys are checked against `Settings`: a typo fails naming the key.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

log = logging.getLogger(__name__)


@dataclass
class Settings:
    run_dir: str = "???"
    out: str = "???"
    answers_from: str = "sft"  # sft: the run's adapter on its base | base: the base model alone
    max_new_tokens: int = 96
    batch_size: int = 8
    train_limit: Optional[int] = None  # first N of the run's (shuffled) train rows; null: all
    eval_limit: Optional[int] = None
    quant: Optional[str] = None  # null: the run's own quantization | none | nf4 | int8


def parse(argv: list[str]) -> Settings:
    from medchat.config import ConfigError

    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"arguments are key=value; got {bad[0]!r} (keys: {', '.join(asdict(Settings()))})")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Settings), OmegaConf.from_dotlist(argv))
    except Exception as e:  # omegaconf names the unknown key or the bad value
        raise ConfigError(f"make_pairs: {e}".splitlines()[0]) from None
    for key in ("run_dir", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"make_pairs: set {key}=...")
    s = Settings(**OmegaConf.to_container(cfg))
    if s.answers_from not in ("sft", "base"):
        raise ConfigError(f"answers_from={s.answers_from!r} is not one of sft, base")
    if s.quant not in (None, "none", "nf4", "int8"):
        raise ConfigError(f"quant={s.quant!r} is not one of none, nf4, int8 (or unset: the run's own)")
    for key in ("max_new_tokens", "batch_size", "train_limit", "eval_limit"):
        value = getattr(s, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    return s


def source_rows(run) -> tuple[list[dict], list[dict], dict]:
    """The run's train and eval rows, re-read from its dataset config and checked against its split.json."""
    from medchat import data
    from medchat.data import DataError

    run_dir, run_cfg = run.dir, run.cfg
    manifest = run.split(": make_pairs needs it to tell the run's train rows from its held-out ones")
    split = data.load_split(run_cfg.dataset)
    if split.fingerprint != manifest["fingerprint"]:
        raise DataError(f"{run_cfg.dataset.path or run_cfg.dataset.hub_id} no longer gives {run_dir}'s split "
                        f"(fingerprint {split.fingerprint}, split.json says {manifest['fingerprint']}): the data "
                        "changed since the run trained, so its train and eval rows cannot be told apart")
    return split.train, split.eval, manifest


def load_answerer(run, s: Settings):
    """(model, tokenizer) that writes the rejected answers: the run's adapter on its base (answers_from=sft) or
    the base alone, both with the run's tokenizer and quantized as trained unless `quant` says otherwise. The
    adapter is checked against the base (medchat.run_models.AdapterMismatch) before any weights load."""
    from omegaconf import OmegaConf

    from medchat import run_models

    if s.answers_from == "sft":
        return run_models.load_for_generation(run, quant=s.quant)
    tokenizer = run_models.run_tokenizer(run)
    path = run_models.check_base(run, tokenizer=tokenizer)
    quant_cfg = run.cfg.quant if s.quant is None else OmegaConf.merge(run.cfg.quant, {"mode": s.quant})
    model = run_models.load_base(run_models.generation_plan(run.cfg.model, quant_cfg, path))
    run_models.set_stop_tokens(model, tokenizer)
    return model, tokenizer


def make_pairs(s: Settings) -> dict:
    from medchat import modeling, provenance, runs
    from medchat.evaluation import heldout
    from medchat.evaluation.generation import GenerationStats, generate
    from medchat.formatting import prompt_ids

    started = time.time()
    run = runs.open_run(s.run_dir)
    run_dir, run_cfg = run.dir, run.cfg
    path = modeling.model_path(run_cfg.model)
    train_rows, eval_rows, manifest = source_rows(run)  # before any weights load
    sides = {"train": train_rows[: s.train_limit], "eval": eval_rows[: s.eval_limit]}
    prompt_format = run_cfg.dataset.prompt_format
    model, tokenizer = load_answerer(run, s)
    quant_mode = run_cfg.quant.mode if s.quant is None else s.quant
    stats, pairs, counts = GenerationStats(), [], {"identical_answers": 0, "rejected_without_eos": 0}
    for side, rows in sides.items():
        contexts, references = zip(*(heldout.context_and_reference(r) for r in rows)) if rows else ((), ())
        prompts = [prompt_ids(tokenizer, ctx, prompt_format) for ctx in contexts]
        gens = generate(model, tokenizer, prompts, batch_size=s.batch_size, max_new_tokens=s.max_new_tokens,
                        stats=stats)
        for r, ctx, ref, g in zip(rows, contexts, references, gens):
            if g.text.strip() == ref.strip():  # the model already gives the doctor's answer: no preference
                counts["identical_answers"] += 1
                continue
            counts["rejected_without_eos"] += not g.ended_with_eos
            pairs.append({"id": f"{side}-{r['id']}", "source_id": r["id"], "source_row": r["row"], "split": side,
                          "prompt": list(ctx), "chosen": ref, "rejected": g.text,
                          "rejected_ended_with_eos": g.ended_with_eos})
        counts[side] = sum(p["split"] == side for p in pairs)
    out = Path(s.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    record = {
        "pairs": str(out),
        "run_dir": str(run_dir),
        "base_model": path,
        "answers_from": s.answers_from,
        "adapter": str(run.adapter) if s.answers_from == "sft" else None,
        "settings": {**asdict(s), "do_sample": False, "prompt_format": prompt_format, "quant": quant_mode},
        "counts": counts,
        "source_ids": {side: [r["id"] for r in rows] for side, rows in sides.items()},
        "split_fingerprint": manifest["fingerprint"],
        "generated_tokens_per_second": stats.tokens_per_second,
        "seconds": time.time() - started,
        "created": datetime.now().isoformat(timespec="seconds"),
        "command": [sys.executable, "-m", "medchat.make_pairs", *sys.argv[1:]],
        **provenance.collect(manifest["fingerprint"], manifest["source"]),
    }
    Path(f"{out}.provenance.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    log.info("%d pairs (%s) -> %s", len(pairs), counts, out)
    return record


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    record = make_pairs(parse(sys.argv[1:] if argv is None else argv))
    print(f"{record['counts']['train']} train + {record['counts']['eval']} eval pairs -> {record['pairs']} "
          f"(provenance: {record['pairs']}.provenance.json)")


if __name__ == "__main__":
    main()
