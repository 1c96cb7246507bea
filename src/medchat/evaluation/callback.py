"""Generation metrics while training: every `eval.every_steps` steps, answer a fixed eval subset.

The first `eval.num_samples` held-out conversations are answered in one batch (left-padded, greedy unless
eval.do_sample), scored with the same metric scripts as evaluate.py (eval.metrics), and logged on rank 0
only: the numbers as `gen/<metric>` plus a `gen/samples` table of prompt / reference / generation to W&B
(on the trainer's `train/global_step` axis) or TensorBoard (scalars and a text table), and one line per
step in RUN/generation_metrics.jsonl. Teacher-forced eval loss cannot show a model that never stops or
repeats itself; this does, while the run is still going.

Sampling seeds torch's RNG with the step (eval.do_sample) and draws from it; the CPU and CUDA RNG states are
saved before and restored after (`torch.random.fork_rng`), so training's dropout masks and data order after a
generation step are those of a run without the callback.

    python train.py eval.every_steps=50 eval.num_samples=8 eval.max_new_tokens=128
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from transformers import TrainerCallback

from medchat.config import GenerationSettings
from medchat.evaluation.generation import generate
from medchat.evaluation.heldout import context_and_reference
from medchat.formatting import prompt_ids

log = logging.getLogger(__name__)


def _question(context: list[dict]) -> str:
    return next(m["content"] for m in reversed(context) if m["role"] == "user")


class GenerationCallback(TrainerCallback):
    def __init__(self, eval_cfg, tokenizer, records: list[dict], prompt_format: str, run_dir: Path, backend: str,
                 attention: str = "sdpa"):
        if not records:
            raise ValueError("eval.every_steps needs held-out rows: set dataset.eval_size > 0")
        self.cfg = eval_cfg
        self.tokenizer = tokenizer
        self.run_dir = Path(run_dir)
        self.backend = backend
        self.attention = attention  # the run plan's generation attention (never flex_attention)
        pairs = [context_and_reference(r) for r in records[: eval_cfg.num_samples]]
        self.questions = [_question(c) for c, _ in pairs]
        self.references = [ref for _, ref in pairs]
        self.prompts = [prompt_ids(tokenizer, c, prompt_format) for c, _ in pairs]
        self._tb = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None and state.global_step % self.cfg.every_steps == 0:
            self.log_generations(model, state.global_step)

    def log_generations(self, model, step: int) -> dict:
        from medchat.evaluation.metrics import text_metrics
        from medchat.modeling import attention_for_generation

        c = self.cfg
        # CPU and every CUDA device's RNG restored afterwards: sampling must not move training's dropout/data order
        devices = range(torch.cuda.device_count())
        with torch.random.fork_rng(devices=devices), attention_for_generation(model, self.attention):
            gens = generate(model, self.tokenizer, self.prompts, GenerationSettings.of(c),
                            batch_size=len(self.prompts), seed=step)
        texts = [g.text for g in gens]
        scores = text_metrics(texts, self.references, names=list(c.metrics))
        values = {f"gen/{k}": v for k, v in scores.corpus.items() if v is not None}
        values["gen/mean_answer_words"] = sum(len(t.split()) for t in texts) / len(texts)
        values["gen/eos_rate"] = sum(g.ended_with_eos for g in gens) / len(gens)
        rows = [[step, q, r, t] for q, r, t in zip(self.questions, self.references, texts)]
        if self.backend == "wandb":
            self._to_wandb(values, rows, step)
        elif self.backend == "tensorboard":
            self._to_tensorboard(values, rows, step)
        with open(self.run_dir / "generation_metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **values, "unavailable": scores.unavailable}) + "\n")
        log.info("step %d generation metrics: %s", step, {k: round(v, 4) for k, v in values.items()})
        return values

    @staticmethod
    def _to_wandb(values: dict, rows: list, step: int) -> None:
        import wandb

        if wandb.run is None:
            return
        table = wandb.Table(columns=["step", "prompt", "reference", "generation"], data=rows)
        wandb.run.log({**values, "gen/samples": table, "train/global_step": step})

    def _to_tensorboard(self, values: dict, rows: list, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self._tb is None:
            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        for key, value in values.items():
            self._tb.add_scalar(key, value, step)
        cell = lambda s: " ".join(str(s).split()).replace("|", "\\|")  # noqa: E731
        table = ["| prompt | reference | generation |", "|---|---|---|"]
        table += [f"| {cell(q)} | {cell(r)} | {cell(t)} |" for _, q, r, t in rows]
        self._tb.add_text("gen/samples", "\n".join(table), step)
        self._tb.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def generation_callbacks(eval_cfg, tokenizer, eval_records: list[dict], run_dir: Path, attention: str = "sdpa", *,
                         prompt_format: str, backend: str) -> list:
    """[GenerationCallback] when eval.every_steps is set, else []; `attention`: the plan's generation one;
    `prompt_format`: dataset.prompt_format; `backend`: tracker.backend."""
    if not eval_cfg.every_steps:
        return []
    return [GenerationCallback(eval_cfg, tokenizer, eval_records, prompt_format, run_dir, backend, attention)]
