"""How often the held-out rows are scored during training, and how many: the evaluation part of the run plan.

medchat.plan.resolve calls `evaluation_plan` without the data (the config's numbers only) and
medchat.plan.with_data again once the tokenized split's rows and tokens are known; the RunPlan carries the
result (`evaluation`), and training.training_arguments reads its `every`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
# trainer.eval_steps unset: about this many evaluations per run, never more often than every MIN_EVAL_EVERY
# optimizer steps (each evaluation scores every held-out row; the before and after evaluations come on top).
EVALUATIONS_PER_RUN = 10
MIN_EVAL_EVERY = 50
# A training step's forward and backward pass costs about 3 forward passes (the backward about 2): the unit
# of the estimated share of compute spent evaluating.
TRAIN_TO_EVAL_COST = 3.0


@dataclass(frozen=True)
class EvalPlan:
    """How often the held-out rows are scored during training, and how many."""

    strategy: str  # steps | epoch | no (trainer.eval_strategy)
    every: int | None  # optimizer steps between evaluations (strategy steps)
    reason: str
    planned_steps: int | None = None  # None: not known before the data is read
    steps_exact: bool = False  # False: estimated from the tokens (packed rows are made by the trainer)
    rows: int | None = None  # held-out rows scored by each evaluation
    evaluations: int | None = None  # during training; one before and one after training come on top
    eval_share: float | None = None  # estimated share of the run's compute spent evaluating

    def describe(self) -> str:
        """One line for the log and `python -m medchat.plan`: how many rows are scored how often."""
        rows = "the held-out rows" if self.rows is None else f"{self.rows:,} held-out rows"
        steps = "" if self.planned_steps is None else \
            f" in {'' if self.steps_exact else '~'}{self.planned_steps:,} planned optimizer steps"
        times = "" if self.evaluations is None else f"{self.evaluations} time{'' if self.evaluations == 1 else 's'}{steps}; "
        if self.strategy == "no":
            during = "not during training"
        elif self.strategy == "epoch":
            during = f"after each epoch ({times}{self.reason})"
        else:
            during = f"every {self.every} optimizer steps ({times}{self.reason})"
        share = "" if self.eval_share is None else f"; ~{self.eval_share:.0%} of the compute is evaluation (estimate)"
        return f"evaluation: {rows} scored before training, {during}, and after training{share}"


def steps_per_epoch(batch, world_size: int, train_rows: int) -> int:
    """`batch`: the plan's BatchPlan. Optimizer steps in one pass over `train_rows` rows (packed rows, when packing), as the Trainer counts them."""
    batches = math.ceil(train_rows / (batch.per_device_train_batch_size * world_size))
    return max(math.ceil(batches / batch.gradient_accumulation_steps), 1)


def evaluation_plan(trainer_cfg, batch, world_size: int, *, packing: bool = False, train_rows: int | None = None,
                    train_tokens: int | None = None, eval_rows: int | None = None,
                    eval_tokens: int | None = None) -> EvalPlan:
    """trainer.eval_strategy / eval_steps and the run plan's `batch` (its BatchPlan) -> how often the held-out
    rows are scored. `packing`: the stage's trainer packs rows (trainer.packing, SFT only).

    eval_steps unset: every max(MIN_EVAL_EVERY, planned steps / EVALUATIONS_PER_RUN) steps, so that a long run on
    a large dataset evaluates about ten times and a short one does not evaluate every few steps. With
    load_best_model_at_end or early stopping the interval divides trainer.save_steps (only evaluated checkpoints
    can be the best). Packed rows are made by the trainer: their number is estimated as the training tokens
    over trainer.max_length (best-fit-decreasing packing fills rows nearly full)."""
    t = trainer_cfg
    per_epoch, packed = None, False
    if train_rows is not None:
        packed = packing and train_tokens is not None
        rows = max(math.ceil(train_tokens / t.max_length), 1) if packed else train_rows
        per_epoch = steps_per_epoch(batch, world_size, rows)
    steps, exact = None, False
    if t.max_steps > 0:
        steps, exact = int(t.max_steps), True
    elif per_epoch is not None:
        steps, exact = math.ceil(per_epoch * float(t.num_train_epochs)), not packed
    every = None
    if t.eval_strategy == "steps":
        if t.eval_steps:
            every, reason = int(t.eval_steps), "trainer.eval_steps"
        else:
            target = max(MIN_EVAL_EVERY, math.ceil((steps or 0) / EVALUATIONS_PER_RUN))
            every = target
            reason = f"trainer.eval_steps unset: ~{EVALUATIONS_PER_RUN} per run, at most every {MIN_EVAL_EVERY} steps"
            if t.load_best_model_at_end or t.early_stopping_patience:
                every = min((d for d in range(target, t.save_steps + 1) if t.save_steps % d == 0),
                            default=t.save_steps)
                reason += f", dividing trainer.save_steps={t.save_steps} (the best checkpoint must be evaluated)"
        evaluations = steps // every if steps is not None else None
    elif t.eval_strategy == "epoch":
        reason = "trainer.eval_strategy=epoch"
        evaluations = math.floor(steps / per_epoch) if steps is not None and per_epoch else None
    else:
        reason, evaluations = "trainer.eval_strategy=no", 0
    share = None
    if None not in (eval_tokens, train_tokens, steps, per_epoch) and eval_rows:
        trained = train_tokens * steps / per_epoch  # the tokens of the planned steps (max_steps may stop early)
        spent = ((evaluations or 0) + 2) * eval_tokens  # before and after training too
        share = spent / (spent + TRAIN_TO_EVAL_COST * trained)
    return EvalPlan(strategy=t.eval_strategy, every=every, reason=reason, planned_steps=steps, steps_exact=exact,
                    rows=eval_rows, evaluations=evaluations, eval_share=share)
