"""Training progress on the console, in place of the trainer's raw metric dicts (issue 22 item 2).

On a terminal: a progress bar (tqdm) with the step, the loss, tokens/s, the elapsed time and the time left;
held-out evaluations are printed above it. Elsewhere (a log file, a sweep job's console.log, a CI log): one
compact line per logging step and per evaluation, each with the time left. After the first steps of a
session, one line says how long training is expected to take, measured on those steps (the first step,
which pays for warm-up, is left out of the rate). Only the main process prints.
"""

from __future__ import annotations

import os
import sys
import time

from transformers import TrainerCallback


def duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class TrainingProgress(TrainerCallback):
    """A bar with an ETA on a terminal, one compact line per log step elsewhere. `stream`: sys.stderr by default
    (looked up when training starts, so a redirected stream is the one written to)."""

    ESTIMATE_AFTER = 2  # steps of this session measured before the duration estimate is printed

    def __init__(self, stream=None, tty: bool | None = None):
        self._stream, self._tty = stream, tty
        self.bar = None
        self.loss = None
        self.total = self.start_step = 0

    @property
    def stream(self):
        return self._stream or sys.stderr

    # -- helpers -------------------------------------------------------------------------------------------
    def _seconds_per_step(self, step: int) -> float | None:
        now = time.monotonic()
        if self.first is not None and step > self.first[1]:
            return (now - self.first[0]) / (step - self.first[1])
        if step > self.start_step:
            return (now - self.t0) / (step - self.start_step)
        return None

    def _left(self, step: int) -> str:
        rate = self._seconds_per_step(step)
        return "" if rate is None else f"~{duration(rate * (self.total - step))} left"

    def _tokens_per_second(self, state) -> float | None:
        elapsed = time.monotonic() - self.t0
        seen = (state.num_input_tokens_seen or 0) - self.tokens0
        return seen / elapsed if seen and elapsed > 0 else None

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    # -- the trainer's events --------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.tty = self.stream.isatty() if self._tty is None else self._tty
        self.total, self.start_step = state.max_steps, state.global_step
        self.t0, self.first, self.estimated = time.monotonic(), None, False
        self.tokens0 = state.num_input_tokens_seen or 0
        self.loss = None
        if self.tty:
            from tqdm.auto import tqdm

            try:  # a terminal that reports no size (a bare pty) would get no bar at all from tqdm
                sized = os.get_terminal_size(self.stream.fileno()).columns > 0
            except (AttributeError, OSError, ValueError):
                sized = False
            self.bar = tqdm(total=self.total, initial=self.start_step, unit="step", desc="training", file=self.stream,
                            dynamic_ncols=sized, ncols=None if sized else 100, nrows=None if sized else 20,
                            smoothing=0.1)

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        step = state.global_step
        if self.first is None:
            self.first = (time.monotonic(), step)  # the rate is measured from here: warm-up left out
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            tps = self._tokens_per_second(state)
            self.bar.set_postfix_str(", ".join(filter(None, [
                f"loss {_num(self.loss)}" if self.loss is not None else "",
                f"{tps:,.0f} tokens/s" if tps else ""])), refresh=False)
        if not self.estimated and step - self.start_step >= self.ESTIMATE_AFTER and step < self.total:
            self.estimated = True
            rate = self._seconds_per_step(step)
            measured = f"step {step}" if self.first[1] + 1 == step else f"steps {self.first[1] + 1}-{step}"
            self._say(f"training: {self.total - step} of {self.total} steps left, ~{duration(rate * (self.total - step))} "
                      f"at {rate:.2f} s/step (measured on {measured}; evaluations add to it)")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        logs = logs or {}
        step = state.global_step
        if "eval_before_loss" in logs:
            self._say(f"held-out loss before training: {_num(logs['eval_before_loss'])} "
                      f"({duration(logs.get('eval_before_runtime', 0))})")
        elif "eval_loss" in logs:
            where = f"step {step}/{state.max_steps}" if state.max_steps else "the end"
            self._say(f"held-out loss at {where}: {_num(logs['eval_loss'])} ({duration(logs.get('eval_runtime', 0))})")
        elif "loss" in logs:
            self.loss = logs["loss"]
            if self.bar is not None:
                tps = self._tokens_per_second(state)
                self.bar.set_postfix_str(f"loss {_num(self.loss)}" + (f", {tps:,.0f} tokens/s" if tps else ""))
            else:
                tps = self._tokens_per_second(state)
                parts = [f"step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%): loss {_num(self.loss)}"]
                if "learning_rate" in logs:
                    parts.append(f"lr {float(logs['learning_rate']):.2e}")
                if tps:
                    parts.append(f"{tps:,.0f} tokens/s")
                parts.append(f"{duration(time.monotonic() - self.t0)} elapsed")
                if step < self.total and self._left(step):
                    parts.append(self._left(step))
                self._say(", ".join(parts))
        elif "train_runtime" in logs:
            tps = self._tokens_per_second(state)
            self._say(f"trained {step - self.start_step} steps in {duration(logs['train_runtime'])}"
                      + (f" ({tps:,.0f} tokens/s)" if tps else "")
                      + (f", mean loss {_num(logs['train_loss'])}" if "train_loss" in logs else ""))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
