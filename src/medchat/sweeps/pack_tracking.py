"""Each packed job's own record keeping while the pack trains (medchat.sweeps.pack_train): its W&B run (several
open in one process), its scalars under the names a solo run's HF callbacks give them, its TensorBoard writer, and
a job failing alone. `member` is pack_train.Member."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def fail(member, error: BaseException) -> None:
    member.failed = f"{type(error).__name__}: {error}"
    log.error("job %d (%s) failed alone: %s", member.index, member.run_dir, member.failed)
    member.attempt.ended(error, member.tracker)
    member.tracker = None
    close_tensorboard(member)


def log_scalars(member, values: dict, step: int) -> None:
    """One job's scalars under the names HF's W&B and TensorBoard callbacks give a solo run's (train/loss,
    train/learning_rate, train/grad_norm, eval/loss), at its optimizer step: to its W&B run, or under
    tracker=tensorboard to RUN/tensorboard (where medchat.tracking points a solo run's TensorBoard callback)."""
    values = {k: float(v) for k, v in values.items() if v is not None}
    if member.tracker is not None and member.tracker.run is not None:
        member.tracker.run.log({**values, "train/global_step": step})
    if member.cfg.tracker.backend == "tensorboard":
        if member.tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            member.tensorboard = SummaryWriter(str(member.run_dir / "tensorboard"))
        for key, value in values.items():
            member.tensorboard.add_scalar(key, value, step)


def close_tensorboard(member) -> None:
    if member.tensorboard is not None:
        member.tensorboard.close()
        member.tensorboard = None


def open_tracker(member, data_counts: dict):
    """The job's own W&B run (its id and name from the launcher's job.json, else its run dir), several open in one
    process (wandb's reinit="create_new", set once by train_pack)."""
    from medchat.tracking import Tracker

    saved = {k: os.environ.get(k) for k in ("WANDB_RUN_ID", "WANDB_NAME", "WANDB_RESUME")}
    for key, value in (("WANDB_RUN_ID", member.wandb_run_id), ("WANDB_NAME", member.wandb_name)):
        if value:
            os.environ[key] = value
        else:
            os.environ.pop(key, None)
    try:
        return Tracker(member.cfg.tracker, member.run_dir, member.plain, member.overrides,
                       extra={"data": data_counts})
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
