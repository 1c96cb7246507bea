"""Perplexity of the reference answers: exp(mean negative log-likelihood over the doctor's tokens).

Each held-out conversation is tokenized exactly as the run trained on it (`tokenize_conversation`: the
same template, and the same mask of assistant tokens, each turn's EOS included), cut to the run's
`trainer.max_length`, and scored teacher-forced. The mean is over all doctor tokens of all rows (a
token-weighted mean), so it does not depend on how rows are batched. Every doctor turn of a multi-turn row
is scored, the earlier ones too (each teacher-forced on the conversation before it), as training scored them.

This is the one definition medchat uses: the training run's held-out loss (metrics.json `eval_loss_*`,
`perplexity_*`, W&B `eval/loss`; medchat.sft_trainer.TokenWeightedEvalLoss) and evaluate.py's `perplexity` are
both exp(total NLL / total scored doctor tokens) of the same tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medchat.formatting import tokenize_conversation

PERPLEXITY_DEFINITION = (
    "exp of the token-weighted mean negative log-likelihood over the scored doctor tokens: every doctor turn of "
    "each row (earlier turns of a multi-turn row too, each teacher-forced on the conversation before it), its EOS "
    "included, as cut to trainer.max_length; total NLL / total scored tokens, independent of batching")


@torch.no_grad()
def doctor_nll(model, tokenizer, conversations: list[list[dict]], prompt_format: str, batch_size: int = 8,
               max_length: int | None = None) -> list[tuple[float, int]]:
    """Per conversation: (sum of the doctor tokens' NLL in nats, number of doctor tokens scored)."""
    rows = []
    for messages in conversations:
        t = tokenize_conversation(tokenizer, messages, prompt_format)
        ids, mask = t["input_ids"], t["assistant_masks"]
        if max_length:
            ids, mask = ids[:max_length], mask[:max_length]
        rows.append((ids, mask))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[tuple[float, int]] = []
    try:
        for b in range(0, len(rows), batch_size):
            batch = rows[b : b + batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for i, (row_ids, row_mask) in enumerate(batch):
                n = len(row_ids)
                ids[i, :n] = torch.tensor(row_ids)
                attention[i, :n] = 1
                labels[i, :n] = torch.where(torch.tensor(row_mask) == 1, torch.tensor(row_ids), -100)
            logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
            target = labels[:, 1:].to(device)  # token t is predicted from the positions before it
            nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target, ignore_index=-100, reduction="none")
            counted = (target != -100)
            out += [(float(s), int(c)) for s, c in zip(nll.sum(1).tolist(), counted.sum(1).tolist())]
    finally:
        model.train(was_training)
    return out


def perplexity(nll: list[tuple[float, int]]) -> float | None:
    total, count = sum(s for s, _ in nll), sum(c for _, c in nll)
    if count == 0:
        return None
    return math.exp(total / count) if total / count < 700 else math.inf


def row_perplexity(sum_nll: float, count: int) -> float | None:
    return perplexity([(sum_nll, count)])
