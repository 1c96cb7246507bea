"""Make DPO/ORPO preference pairs offline from a finished SFT run's own rows.

    python -m medchat.make_pairs run_dir=runs/SFT out=pairs/medquad.jsonl               # rejected: the SFT model
    python -m medchat.make_pairs run_dir=runs/SFT out=pairs.jsonl answers_from=base max_new_tokens=96 train_limit=200

For every row of the run's split, chosen = the doctor's answer and rejected = the model's own greedy answer to
the same prompt (medchat.evaluation.generation, batched, with medchat.decoding's settings as evaluate.py and chat).
A rejected answer cut at max_new_tokens before its EOS is generated again with `regenerate_max_new_tokens` of
room; one still cut then is kept under `eos_rule: no_eos_scored` (training scores neither answer's EOS, see
medchat.data.preference), every other pair is `both_eos`. Without this, DPO would learn to prefer the answer
that ends over the one that was cut, whatever either says. Each pair keeps the side of the split its row was on
(`split: train | eval`): pairs from the run's held-out rows are held out from DPO too. The run's training rows
are re-read from its dataset config and must reproduce its split.json fingerprint (else the data changed).
Beside OUT, OUT.provenance.json records the model, run, settings (the generation config in full), the source row
ids, and counts: pairs per side and per eos rule, answers regenerated and how many of those then ended.
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
    # room for a second try at the answers cut at max_new_tokens (null: 4 x max_new_tokens; equal to
    # max_new_tokens: no second try). Greedy, so the second answer continues the first.
    regenerate_max_new_tokens: Optional[int] = None
    batch_size: int = 8
    train_limit: Optional[int] = None  # first N of the run's (shuffled) train rows; null: all
    eval_limit: Optional[int] = None
    quant: Optional[str] = None  # null: the run's own quantization | none | nf4 | int8
    # true: the adapter folded into the (dequantized) base, as evaluate.py and chat generate by default, so the
    # rejected answers are the ones evaluate.py scores; false: unmerged on the base as `quant` says
    merge: bool = True


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
    for key in ("max_new_tokens", "batch_size", "train_limit", "eval_limit", "regenerate_max_new_tokens"):
        value = getattr(s, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    if s.regenerate_max_new_tokens is None:
        s.regenerate_max_new_tokens = 4 * s.max_new_tokens
    if s.regenerate_max_new_tokens < s.max_new_tokens:
        raise ConfigError(f"regenerate_max_new_tokens={s.regenerate_max_new_tokens} is below max_new_tokens="
                          f"{s.max_new_tokens}: the second try must have at least as much room")
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
        return run_models.load_for_generation(run, quant=s.quant, merge=s.merge)
    tokenizer = run_models.run_tokenizer(run)
    path = run_models.check_base(run, tokenizer=tokenizer)
    quant_cfg = run.cfg.quant if s.quant is None else OmegaConf.merge(run.cfg.quant, {"mode": s.quant})
    model = run_models.load_base(run_models.generation_plan(run.cfg.model, quant_cfg, path))
    run_models.set_stop_tokens(model, tokenizer)
    return model, tokenizer


def config_of(s: Settings, max_new_tokens: int):
    """make_pairs' decoding: greedy, no repetition penalty, as evaluate.py scores answers by default."""
    from medchat.config import GenerationSettings

    return GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.0)


def answers(model, tokenizer, prompts: list[list[int]], s: Settings, stats, counts: dict) -> list:
    """[(Generation, regenerated)] per prompt: greedy answers, the ones cut at max_new_tokens generated again
    with regenerate_max_new_tokens of room (counted)."""
    from medchat.evaluation.generation import generate

    first = generate(model, tokenizer, prompts, config_of(s, s.max_new_tokens), batch_size=s.batch_size,
                     stats=stats)
    out = [(g, False) for g in first]
    cut = [i for i, g in enumerate(first) if not g.ended_with_eos]
    if cut and s.regenerate_max_new_tokens > s.max_new_tokens:
        again = generate(model, tokenizer, [prompts[i] for i in cut], config_of(s, s.regenerate_max_new_tokens),
                         batch_size=s.batch_size, stats=stats)
        for i, g in zip(cut, again):
            out[i] = (g, True)
        counts["regenerated"] += len(cut)
        counts["regenerated_ended_with_eos"] += sum(g.ended_with_eos for g in again)
    return out


def make_pairs(s: Settings) -> dict:
    from medchat import decoding, modeling, provenance, runs
    from medchat.evaluation import heldout
    from medchat.evaluation.generation import GenerationStats
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
    stats, pairs = GenerationStats(), []
    counts = {"identical_answers": 0, "regenerated": 0, "regenerated_ended_with_eos": 0,
              "rejected_without_eos": 0, "both_eos": 0, "no_eos_scored": 0}
    for side, rows in sides.items():
        contexts, references = zip(*(heldout.context_and_reference(r) for r in rows)) if rows else ((), ())
        prompts = [prompt_ids(tokenizer, ctx, prompt_format) for ctx in contexts]
        gens = answers(model, tokenizer, prompts, s, stats, counts)
        for r, ctx, ref, (g, regenerated) in zip(rows, contexts, references, gens):
            if g.text.strip() == ref.strip():  # the model already gives the doctor's answer: no preference
                counts["identical_answers"] += 1
                continue
            rule = "both_eos" if g.ended_with_eos else "no_eos_scored"
            counts["rejected_without_eos"] += not g.ended_with_eos
            counts[rule] += 1
            pairs.append({"id": f"{side}-{r['id']}", "source_id": r["id"], "source_row": r["row"], "split": side,
                          "prompt": list(ctx), "chosen": ref, "rejected": g.text,
                          "rejected_ended_with_eos": g.ended_with_eos, "rejected_regenerated": regenerated,
                          "eos_rule": rule})
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
        "settings": {**asdict(s), "prompt_format": prompt_format, "quant": quant_mode,
                     "merge": s.merge if s.answers_from == "sft" else None,  # base: no adapter to merge
                     "generation": decoding.decoding_values(config_of(s, s.max_new_tokens)),
                     "regeneration": decoding.decoding_values(config_of(s, s.regenerate_max_new_tokens))},
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
