"""`python evaluate.py ...` for task=generate: answer the held-out rows, score them, write RUN/eval/.

Order of work: the plan (config, run dir, adapter/base checks) and the rows (held out, verified against
split.json) are settled before any weights load; then each model (the base first when compare_base=true,
then the adapter) generates answers in batches and is scored; last the outputs are written:
predictions.jsonl, metrics.json and summary.md.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from medchat.config import GenerationSettings
from medchat.evaluation import heldout, intervals, outputs
from medchat.evaluation.generation import GenerationStats, generate
from medchat.evaluation.metrics import text_metrics
from medchat.evaluation.perplexity import doctor_nll, perplexity, row_perplexity
from medchat.evaluation.plan import Plan, load_models, load_tokenizer, make_plan
from medchat.formatting import prompt_ids

log = logging.getLogger(__name__)


def _rows(cfg, plan: Plan) -> tuple[list[dict], str]:
    """(rows to answer, where they came from): the run's held-out rows, or rows.path's (checked against the
    run's training split)."""
    if plan.rows_file:
        rows, source = heldout.other_rows(cfg.rows, plan.run)
    else:
        rows, source = heldout.heldout_rows(plan.run), "eval.jsonl"
    if not rows:
        from medchat.data import DataError

        raise DataError(f"{plan.rows_file}: no rows to evaluate")
    return (rows[: cfg.limit] if cfg.limit else rows), source


def _log_to_file(out_dir: Path) -> logging.Handler:
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out_dir / "evaluate.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def score_model(model, tokenizer, rows: list[dict], cfg, plan: Plan) -> tuple[dict, list[str], list[dict], dict]:
    """Generate and score one model -> (corpus metrics, generations, per-row scores, report details)."""
    g = cfg.generation
    contexts, references = zip(*(heldout.context_and_reference(r) for r in rows))
    prompts = [prompt_ids(tokenizer, ctx, plan.prompt_format) for ctx in contexts]
    stats = GenerationStats()
    gens = generate(model, tokenizer, prompts, GenerationSettings.of(g), batch_size=g.batch_size, seed=g.seed,
                    cache_implementation=g.cache_implementation, stats=stats)
    texts = [x.text for x in gens]
    m = cfg.metrics
    scores = text_metrics(texts, list(references), names=list(m.names), bertscore_model=m.bertscore_model,
                          bertscore_num_layers=m.bertscore_num_layers, bertscore_batch_size=m.bertscore_batch_size)
    per_row = scores.per_example
    corpus = dict(scores.corpus)
    if m.perplexity:
        nll = doctor_nll(model, tokenizer, [r["messages"] for r in rows], plan.prompt_format,
                         batch_size=m.perplexity_batch_size, max_length=plan.max_length)
        corpus["perplexity"] = perplexity(nll)
        for row, (s, c) in zip(per_row, nll):
            # the sums, not only the ratio: the bootstrap needs the token-weighted statistic per row
            row.update(perplexity=row_perplexity(s, c), nll_sum=s, nll_tokens=c)
    words = [len(t.split()) for t in texts]
    for row, x, w in zip(per_row, gens, words):
        row.update(words=w, new_tokens=len(x.token_ids), ended_with_eos=x.ended_with_eos)
    corpus.update(
        mean_answer_words=sum(words) / len(words),
        eos_rate=sum(x.ended_with_eos for x in gens) / len(gens),
        mean_new_tokens=sum(len(x.token_ids) for x in gens) / len(gens),
        generation_seconds=stats.seconds,
        generated_tokens_per_second=stats.tokens_per_second,
    )
    details = {**scores.details, "unavailable": scores.unavailable,
               "prompts": [tokenizer.decode(p) for p in prompts], "references": list(references),
               "statistics": intervals.statistics(per_row, texts, list(references))}
    return corpus, texts, per_row, details


def run(cfg) -> Path:
    plan = make_plan(cfg)
    if cfg.task == "mcq":
        from medchat.evaluation.mcq import run_mcq

        return run_mcq(cfg, plan)
    rows, source = _rows(cfg, plan)
    handler = _log_to_file(plan.out_dir)
    started = time.time()
    try:
        tokenizer = load_tokenizer(plan)
        results = {}
        for label, model in load_models(plan, cfg.merge, cfg.compare_base):
            log.info("scoring %s on %d rows", label, len(rows))
            results[label] = score_model(model, tokenizer, rows, cfg, plan)
        bootstrapped = intervals.model_intervals({m: r[3].pop("statistics") for m, r in results.items()})
        outputs.write_generation_outputs(
            plan, rows, results,
            settings={**OmegaConf.to_container(cfg.generation, resolve=True), "merge": cfg.merge,
                      "quant": plan.quant_cfg.mode, "prompt_format": plan.prompt_format,
                      "max_length": plan.max_length, "base_model": plan.model_path},
            artifact=plan.artifact,
            command=[sys.executable, *sys.argv],
            seconds=time.time() - started,
            config=OmegaConf.to_container(cfg, resolve=True),
            source=source, limit=cfg.limit, intervals=bootstrapped,
        )
        if cfg.log_wandb:  # into the training run's W&B run (resumed by id): one dashboard row
            from medchat.evaluation.wandb_table import log_evaluation

            # the run's summary holds the full held-out evaluation of its own adapter only: a smoke run, another
            # dataset's rows, an exported artifact or a preset base model go to its history only
            log_evaluation(plan.run_dir, plan.out_dir,
                           summary=not cfg.limit and source == "eval.jsonl" and cfg.artifact is None
                           and cfg.model is None)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return plan.out_dir
