"""Graceful stop on SIGTERM / SIGINT: finish the optimizer step, save a checkpoint, exit with a distinct code.

SLURM preemption, `timeout`, Kubernetes and a CI cancel all send SIGTERM; Ctrl-C sends SIGINT. Without
this, the run ends inside a step, its `status` stays `running` and the steps since the last checkpoint are
lost. With it:

1. the first signal only sets a flag (`StopRequest`), logged with the step it arrived at;
2. `PreemptionCallback.on_step_end` (after the optimizer step that was running) asks the Trainer to save a
   checkpoint and stop; in a multi-process run the flag is OR-ed across ranks first, so all stop together;
3. `medchat.pipeline` then raises `Interrupted` (a SystemExit with code EXIT_INTERRUPTED = 75, EX_TEMPFAIL:
   "try again later") after writing `status` = interrupted with the signal and step and marking the W&B
   run preempted. `trainer.resume=auto` (the default) continues from that checkpoint on the next launch.
4. a second signal while stopping restores the default action and re-sends itself: the process ends at once.

Under submitit (SLURM through Hydra's submitit launcher) SLURM's warning signal is SIGUSR2, for which
submitit has installed its own handler (checkpoint the job and requeue it, then exit). medchat takes that
signal too, stops gracefully as above, and then calls submitit's handler, so the job is requeued after its
checkpoint is on disk; the requeued job resumes it (`medchat.sweeps.state.rejoin`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from transformers import TrainerCallback

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL from sysexits.h: the run stopped on request and can be resumed
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(SystemExit):
    """Training stopped on a signal after saving a checkpoint; the process exits with EXIT_INTERRUPTED."""

    def __init__(self, signum: int, step: int, checkpoint: str | None):
        super().__init__(EXIT_INTERRUPTED)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.signal_name = signal.Signals(signum).name

    def __str__(self) -> str:
        return (f"stopped by {self.signal_name} after step {self.step}; checkpoint {self.checkpoint}; "
                f"continue with the same command (trainer.resume=auto)")


class StopRequest:
    """The signal handlers, installed for one training run (main thread only: Python's rule for signals)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> "StopRequest":
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: SIGTERM/SIGINT will not stop training gracefully")
            return self
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        usr2 = signal.getsignal(signal.SIGUSR2)
        if callable(usr2):  # submitit's checkpoint-and-requeue handler: chain it (see the module docstring)
            self._previous[signal.SIGUSR2] = signal.signal(signal.SIGUSR2, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: no more grace
            log.warning("second signal (%s): exiting now without a checkpoint", signal.Signals(signum).name)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        log.warning("%s received: finishing the current optimizer step, then saving a checkpoint and stopping "
                    "(send it again to exit at once)", signal.Signals(signum).name)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def hand_on(self) -> None:
        """After a graceful stop: run the handler a chained launcher installed (submitit requeues the job)."""
        previous = self._previous.get(self.signum) if self.signum is not None else None
        if self.signum == signal.SIGUSR2 and callable(previous):
            self.uninstall()
            previous(self.signum, None)


def _any_rank(flag: bool, device) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class PreemptionCallback(TrainerCallback):
    """At the end of each optimizer step: if a stop was requested (on any rank), save and stop."""

    def __init__(self, request: StopRequest):
        self.request = request
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if _any_rank(self.request.requested, args.device):
            if self.request.signum is None:  # another rank got the signal
                self.request.signum = signal.SIGTERM
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False
            self.stopped_at = state.global_step
        return control
