"""The trainer class every SFT run trains with: TRL's SFTTrainer plus medchat's mixins, each one job.

- TokenWeightedEvalLoss: eval_loss as medchat's one perplexity definition (total NLL / scored tokens);
- CountPositions: the positions training computed, padding included, for metrics.json's padding share;
- DeferredStepMetrics: no host read inside a training step, the same logged numbers.
medchat.training builds the trainer from this class (build_trainer).
"""

from __future__ import annotations

import functools

import torch


class TokenWeightedEvalLoss:
    """A mixin for an SFT trainer: eval_loss is the token-weighted mean NLL over every scored (doctor) token of the
    held-out rows, the one perplexity definition medchat uses everywhere (medchat.evaluation.perplexity).

    transformers' evaluation loop averages per-batch mean losses weighted by the number of (packed) sequences per
    batch, so a batch with fewer doctor tokens weighs as much as a full one, and the number depends on
    per_device_eval_batch_size and packing. Here each eval batch's mean loss is multiplied back by its number of
    scored tokens (the shifted labels that are not -100: the loss's own denominator), summed across batches and
    ranks, and divided once: eval_loss = total NLL / total scored tokens, also logged as `<prefix>_scored_tokens`.
    Under DDP the distributed sampler may repeat a few rows to even out the last batch: they are counted here
    (transformers' gather_for_metrics drops them from its own mean); a single process, as tested, repeats none."""

    _eval_nll = None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        device = self.args.device
        self._eval_nll = [torch.zeros((), dtype=torch.float64, device=device),
                          torch.zeros((), dtype=torch.float64, device=device)]
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only=prediction_loss_only,
                                             ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
            total, count = (float(self.accelerator.reduce(t, reduction="sum")) for t in self._eval_nll)
        finally:
            self._eval_nll = None
        if count > 0 and f"{metric_key_prefix}_loss" in output.metrics:
            output.metrics[f"{metric_key_prefix}_loss"] = total / count
            output.metrics[f"{metric_key_prefix}_scored_tokens"] = int(count)
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if self._eval_nll is not None and not model.training:
            loss = out[0] if return_outputs else out
            # the loss's own denominator (TRL's fused LM head and the model's loss alike): the labels shifted by one
            # (or the collator's shift_labels), -100 ignored
            labels = inputs.get("shift_labels")
            labels = labels if labels is not None else inputs["labels"][:, 1:]
            count = (labels != -100).sum()
            self._eval_nll[0] += loss.detach().double() * count
            self._eval_nll[1] += count.double()
        return out


class CountPositions:
    """A mixin for a trainer: the token positions this session's training micro-batches computed, padding
    included (a shape known on the host: no device sync), for the padding share metrics.json reports."""

    train_positions = 0

    def training_step(self, model, inputs, *args, **kwargs):
        self.train_positions += int(inputs["input_ids"].numel())
        return super().training_step(model, inputs, *args, **kwargs)


def padding_share(trainer, real_tokens: int, world_size: int) -> float | None:
    """Share of the positions computed in training that were padding: 1 - real tokens / positions (all ranks)."""
    positions = getattr(trainer, "train_positions", 0) * world_size
    return 1 - real_tokens / positions if positions else None


class DeferredStepMetrics:
    """A mixin for an SFT trainer: no host synchronisation inside a training step (issue 23); the same numbers.

    Per micro-batch, TRL's SFTTrainer reads its entropy, token accuracy and token count back to the host
    (`.item()`, `if num_valid > 0`) right after the forward, and transformers reads the non-padding token count
    (`num_input_tokens_seen`): each read waits for the GPU, so the host cannot queue the backward or the next
    step while the GPU works. Here the same per-micro-batch values stay on the device and are read in one
    transfer when the trainer logs or saves a checkpoint (`flush_step_metrics`), so logs, trainer_state.json and
    metrics.json hold exactly what TRL and transformers would have put there. Between logging steps
    `state.num_input_tokens_seen` lags (the progress bar's tokens/s reads it at logging steps).

    The loss is TRL's own plain path (fused LM head, NLL summed over the label mask, divided by
    `num_items_in_batch`); every other path (a custom loss function, label smoothing, DFT, MoE aux loss,
    sequence parallelism, eval) goes to TRL unchanged. tests/test_step_metrics.py compares both with TRL's."""

    _pending_metrics: dict | None = None

    def _pending(self) -> dict:
        if self._pending_metrics is None:
            self._pending_metrics = {"entropy": [], "mean_token_accuracy": [], "num_tokens": [], "seen": []}
        return self._pending_metrics

    def _plain_loss(self) -> bool:
        pc = getattr(self.accelerator, "parallelism_config", None)
        return (self.compute_loss_func is None and self.label_smoother is None and self.args.loss_type == "nll"
                and not self.aux_loss_enabled and not (pc is not None and getattr(pc, "sp_enabled", False)))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not model.training or not self._plain_loss():
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = (-outputs.log_probs).sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        # TRL's metrics, each a device scalar until the next flush (0 where no label is scored, as TRL's)
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(outputs.label_mask.sum()).sum()
        nonzero, denom = num_valid > 0, num_valid.clamp(min=1)
        pending = self._pending()
        for key, value in (("entropy", outputs.entropy.detach().sum()), ("mean_token_accuracy", outputs.is_top1.sum())):
            pending[key].append(torch.where(nonzero, gather(value).sum() / denom, 0.0))
        if "attention_mask" in inputs:
            pending["num_tokens"].append(gather(inputs["attention_mask"].sum()).sum() // self._tp_size)
        else:  # padding-free rows: TRL counts every position (a shape: on the host where one process runs)
            pending["num_tokens"].append(self._host_or_gathered(inputs["position_ids"].size(1)) // self._tp_size)
        return loss

    def _host_or_gathered(self, count):
        """A count summed over ranks: a host int as it is in one process; else gathered on the device."""
        if isinstance(count, int) and self.accelerator.num_processes == 1:
            return count
        return self.accelerator.gather(torch.as_tensor(count, device=self.args.device, dtype=torch.int64)).sum()

    def _track_num_input_tokens(self, inputs):
        # transformers' count (Trainer._track_num_input_tokens), kept on the device until the next flush
        mode = self.args.include_num_input_tokens_seen
        main = getattr(self.model, "main_input_name", "input_ids")
        if mode in ("no", False) or main not in inputs:
            return super()._track_num_input_tokens(inputs)
        pad = getattr(self.processing_class, "pad_token_id", None)
        if mode == "non_padding" and "attention_mask" in inputs:
            count = inputs["attention_mask"].sum()
        elif mode == "non_padding" and pad is not None:
            count = (inputs[main] != pad).sum()
        else:
            count = inputs[main].numel()
        self._pending()["seen"].append(self._host_or_gathered(count))

    def flush_step_metrics(self) -> None:
        """Read every pending value in one device-to-host transfer and hand each where TRL / transformers keep it."""
        pending = self._pending_metrics
        if not pending or not any(pending.values()):
            return
        tensors = [v for values in pending.values() for v in values if isinstance(v, torch.Tensor)]
        read = iter(torch.stack([t.double() for t in tensors]).tolist() if tensors else [])
        for key, values in pending.items():
            got = [next(read) if isinstance(v, torch.Tensor) else v for v in values]
            if not got:
                continue
            if key == "seen":
                self.state.num_input_tokens_seen += int(sum(got))
            elif key == "num_tokens":
                self._total_train_tokens += int(sum(got))
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            else:
                self._metrics["train"][key].extend(got)
            values.clear()

    def log(self, logs, *args, **kwargs):
        self.flush_step_metrics()
        return super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        self.flush_step_metrics()  # trainer_state.json holds num_input_tokens_seen
        return super()._save_checkpoint(model, trial)


@functools.cache
def sft_trainer_class():
    """TRL's SFTTrainer with the three mixins above: the class every SFT run trains with."""
    from trl import SFTTrainer

    return type("MedchatSFTTrainer", (TokenWeightedEvalLoss, CountPositions, DeferredStepMetrics, SFTTrainer), {})
