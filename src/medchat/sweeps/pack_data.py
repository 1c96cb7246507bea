"""The micro-batches each job of a pack sees, as its solo `train.py` run would see them (issue 24).

TRL's own SFTTrainer dataset preparation and collator over medchat's tokenized rows, transformers' count of
optimizer steps and epochs, and the row order accelerate's seeded sampler gives a solo run (trainer.seed + epoch),
cut into each optimizer step's micro-batches. medchat.sweeps.pack_train steps the jobs through them;
tests/test_pack_train.py checks them against the micro-batches the real solo trainer fed its training_step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch


def prepare_dataset(ds, tokenizer, args, name: str):
    """TRL's own SFTTrainer preparation of medchat's tokenized rows (labels from the assistant masks, BFD
    packing when trainer.packing), called on a stand-in for the trainer (the rows are already tokenized: it
    reads no other trainer state), then the columns the Trainer keeps for the collator."""
    from trl import SFTTrainer

    stand_in = SimpleNamespace(completion_only_loss=False, chat_template=None, _is_vision_dataset=False)
    packing = args.packing if name == "train" or args.eval_packing is None else args.eval_packing
    ds = SFTTrainer._prepare_dataset(stand_in, ds, tokenizer, args, packing, None, name)
    return ds.select_columns([c for c in ("input_ids", "labels", "seq_lengths") if c in ds.column_names])


def collator(tokenizer, args):
    """The collator SFTTrainer builds for these args (padding-free when packing with BFD)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    padding_free = args.padding_free or (args.packing and args.packing_strategy in {"bfd", "bfd_split"})
    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=padding_free,
                                           pad_to_multiple_of=args.pad_to_multiple_of)


@dataclass
class Schedule:
    """How many optimizer steps, in how many epochs, of how many micro-batches: transformers'
    Trainer.set_initial_training_values for one process."""

    batches_per_epoch: int
    steps_per_epoch: int
    max_steps: int
    epochs: int
    accumulation: int

    @classmethod
    def of(cls, rows: int, args) -> "Schedule":
        batches = math.ceil(rows / args.per_device_train_batch_size)
        ga = args.gradient_accumulation_steps
        per_epoch = max(batches // ga + int(batches % ga > 0), 1)
        if args.max_steps > 0:
            max_steps = args.max_steps
            epochs = max_steps // per_epoch + int(max_steps % per_epoch > 0)
        else:
            max_steps = math.ceil(args.num_train_epochs * per_epoch)
            epochs = math.ceil(args.num_train_epochs)
        return cls(batches, per_epoch, max_steps, epochs, ga)


def solo_order(rows: int, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch of a solo run: transformers hands its RandomSampler to accelerate, which (with
    TrainingArguments' default use_seedable_sampler) replaces it by a SeedableRandomSampler seeded with
    data_seed + epoch (data_seed = trainer.seed in medchat.training): a randperm of a generator so seeded."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed + epoch)
    return torch.randperm(rows, generator=generator).tolist()


def optimizer_steps(ds, collate, args, schedule: Schedule, start_step: int = 0):
    """Yield (step, [micro-batches]) for each optimizer step after `start_step`, in the solo run's order: every
    epoch's batches of per_device_train_batch_size rows, grouped by gradient_accumulation_steps (the epoch's last
    step takes the remainder). Steps before `start_step` (a resume) are skipped without collating.

    Step k takes rows order[k*s:(k+1)*s] of its epoch (s = rows per optimizer step; steps per epoch
    ceil(ceil(rows/bs)/ga) = ceil(rows/s)) whatever the split s = bs x ga, so the pack's memory plan may split a
    step otherwise than the solo run does: the same rows, and (padding-free collation labels each document's first
    token -100) the same num_items_in_batch; tests/test_pack_train.py checks it against the solo trainer."""
    bs, ga = args.per_device_train_batch_size, schedule.accumulation
    step = 0
    for epoch in range(schedule.epochs):
        order = solo_order(len(ds), args.data_seed if args.data_seed is not None else args.seed, epoch)
        batches = [order[i:i + bs] for i in range(0, len(order), bs)]
        for update in range(schedule.steps_per_epoch):
            if step >= schedule.max_steps:
                return
            step += 1
            chunk = batches[update * ga:(update + 1) * ga]
            if step <= start_step or not chunk:
                continue
            micro = []
            for idx in chunk:
                rows = [ds[i] for i in idx]
                batch = collate(rows)
                # the real tokens, counted before collation: neither padding nor (pad == eos tokenizers) EOS
                # tokens can be told apart from the ids afterwards
                batch["real_tokens"] = sum(len(r["input_ids"]) for r in rows)
                micro.append(batch)
            yield step, micro


def trained_tokens(batch: dict) -> int:
    """HF's num_items_in_batch of one micro-batch: the shifted labels that are trained."""
    labels = batch["shift_labels"] if "shift_labels" in batch else batch["labels"][..., 1:]
    return int(labels.ne(-100).sum())
