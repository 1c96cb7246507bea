"""Batched answer generation: left padding, EOS-aware cutting, greedy or sampled (medchat.decoding's config).

Prompts are sorted by length and cut into batches of `batch_size`, each left-padded with the tokenizer's
pad token (never EOS), so every row's last prompt token sits at the end of the batch and new tokens line
up. A row ends at the first of the stop ids (formatting.stop_token_ids: the tokenizer's EOS, the model's
generation_config eos and the family's end tokens, e.g. Llama-3's <|eot_id|> and <|end_of_text|>);
`ended_with_eos` says whether it got there before `max_new_tokens`.
Greedy outputs equal one-prompt-at-a-time outputs (tests/test_generation.py checks it on the tiny model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass
class Generation:
    text: str
    token_ids: list[int]  # new tokens, without the stop token and padding
    ended_with_eos: bool


@dataclass
class GenerationStats:
    seconds: float = 0.0
    new_tokens: int = 0  # counting each row's stop token

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


def left_pad(prompts: list[list[int]], pad_id: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(width or 0, max(len(p) for p in prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def _cut(row: list[int], stops: set[int], pad_id: int) -> tuple[list[int], bool, int]:
    """New tokens up to the first stop id -> (tokens, ended_with_eos, tokens generated incl. the stop)."""
    for k, t in enumerate(row):
        if t in stops:
            return row[:k], True, k + 1
    kept = row
    while kept and kept[-1] == pad_id:  # only finished rows are padded, but be safe
        kept = kept[:-1]
    return kept, False, len(kept)


def resolve_cache(choice: str | None, device: torch.device) -> str | None:
    """generation.cache_implementation: auto -> static on a CUDA GPU (compiled decoding), else dynamic."""
    if choice == "auto":
        return "static" if device.type == "cuda" else None
    return None if choice in (None, "dynamic") else choice


def static_shape(prompts: list[list[int]], batch_size: int, multiple: int = 64) -> tuple[int, int]:
    """(rows, width) every batch is padded to under a static cache, so decoding compiles once for the whole
    eval set: the longest prompt rounded up to `multiple`, and full batches (the last one padded with copies)."""
    width = -(-max(len(p) for p in prompts) // multiple) * multiple
    return min(batch_size, len(prompts)), width


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], settings, batch_size: int = 16, seed: int = 0,
             cache_implementation: str | None = None, stats: GenerationStats | None = None) -> list[Generation]:
    """One Generation per prompt (token id lists), in the prompts' order, decoded as `settings`
    (medchat.config.GenerationSettings) say through medchat.decoding; `seed` seeds torch when sampling."""
    from medchat import decoding

    device = next(model.parameters()).device
    cache_implementation = resolve_cache(cache_implementation, device)
    config = decoding.generation_config(settings, model, tokenizer, cache_implementation)
    stops = set(config.eos_token_id)
    rows, width = static_shape(prompts, batch_size) if cache_implementation == "static" else (None, None)
    was_training = model.training
    model.eval()
    if settings.do_sample:
        torch.manual_seed(seed)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    start = time.perf_counter()
    try:
        for b in range(0, len(order), batch_size):
            batch = order[b : b + batch_size]
            fill = [batch[0]] * (rows - len(batch)) if rows else []  # same shape as every other batch
            ids, mask = left_pad([prompts[i] for i in batch + fill], tokenizer.pad_token_id, width)
            out = decoding.generate(model, config, input_ids=ids.to(device), attention_mask=mask.to(device))
            for i, row in zip(batch, out[: len(batch), ids.shape[1]:].tolist()):
                kept, ended, produced = _cut(row, stops, tokenizer.pad_token_id)
                results[i] = Generation(tokenizer.decode(kept, skip_special_tokens=True).strip(), kept, ended)
                if stats is not None:
                    stats.new_tokens += produced
            log.info("generated %d/%d", min(b + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
    if device.type == "cuda":
        torch.cuda.synchronize()
    if stats is not None:
        stats.seconds += time.perf_counter() - start
    return results
