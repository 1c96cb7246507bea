"""Conversations -> token ids and the mask of tokens the loss is computed on.

Loss is taken on the doctor's (assistant's) turns only, each ending with EOS so the model learns to stop.
The mask is found by rendering growing prefixes of the conversation: the tokens an assistant turn adds
to "conversation so far + generation prompt" are that turn. This works with any chat template, also the
many (Llama-3, Mistral, Qwen2) that lack the `{% generation %}` markers `return_assistant_tokens_mask`
needs, and fails loudly if a template is not prefix-stable or never emits EOS.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PLAIN_QUERY = "### Patient query: "
PLAIN_ANSWER = "### Doctor opinion:"
SHIPPED_TEMPLATES = ("chatml", "inst")
# Tokens that end a turn or a text in the families medchat's recipes use. A tokenizer has one eos, but
# its model may stop on several (Llama-3 Instruct ends turns with <|eot_id|> and texts with <|end_of_text|>;
# Qwen2 with <|im_end|> and <|endoftext|>); generation must stop at whichever the model emits.
END_TOKENS = ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<|im_end|>", "<|endoftext|>", "</s>")


class TemplateError(ValueError):
    pass


def load_chat_template(name: str | None) -> str | None:
    """null -> keep the tokenizer's own; a shipped name; or a path to a .jinja file."""
    if name is None:
        return None
    if name in SHIPPED_TEMPLATES:
        return resources.files("medchat").joinpath(f"templates/{name}.jinja").read_text()
    path = Path(name).expanduser()
    if not path.is_file():
        raise TemplateError(f"model.chat_template={name!r} is neither one of {SHIPPED_TEMPLATES} nor a file")
    return path.read_text()


def _chat_ids(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
    )
    return list(out["input_ids"])


def _plain_prompt(messages: list[dict]) -> list[tuple[str, str]]:
    """(text, role) segments of the plain-text format; assistant segments are the trained ones."""
    segments, first = [], True
    for m in messages:
        if m["role"] == "system":
            segments.append((m["content"] + "\n\n", "prompt"))
        elif m["role"] == "user":
            segments.append((("" if first else "\n") + PLAIN_QUERY + m["content"] + "\n" + PLAIN_ANSWER, "prompt"))
            first = False
        else:
            segments.append((" " + m["content"], "assistant"))
    return segments


def _bos(tokenizer) -> list[int]:
    ids = tokenizer("x")["input_ids"]
    return ids[:1] if tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id] else []


def _tokenize_plain(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    ids = _bos(tokenizer)
    mask = [0] * len(ids)
    for text, role in _plain_prompt(messages):
        seg = tokenizer(text, add_special_tokens=False)["input_ids"]
        if role == "assistant":
            seg = seg + [tokenizer.eos_token_id]
        ids += seg
        mask += [int(role == "assistant")] * len(seg)
    return ids, mask


def _tokenize_chat(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    ids = _chat_ids(tokenizer, messages)
    mask = [0] * len(ids)
    eos = tokenizer.eos_token_id
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _chat_ids(tokenizer, messages[:k], generation_prompt=True)
        upto = _chat_ids(tokenizer, messages[: k + 1])
        if ids[: len(prefix)] != prefix or ids[: len(upto)] != upto:
            raise TemplateError(
                "the chat template renders a conversation's beginning differently from the whole conversation, "
                "so the doctor's tokens cannot be located; use model.chat_template=chatml or inst, or a "
                "prefix-stable template"
            )
        span = ids[len(prefix) : len(upto)]
        if eos not in span:
            raise TemplateError(
                f"the chat template does not end assistant turns with the eos token {tokenizer.eos_token!r}: the "
                "model would never learn to stop. Set model.chat_template to a template that does (chatml, inst)"
            )
        end = len(prefix) + len(span) - span[::-1].index(eos)  # nothing after the turn's EOS is trained
        mask[len(prefix) : end] = [1] * (end - len(prefix))
    return ids, mask


def tokenize_conversation(tokenizer, messages: list[dict], prompt_format: str) -> dict:
    """-> {"input_ids", "assistant_masks"}: the columns TRL's SFTTrainer turns into labels."""
    if prompt_format == "plain":
        ids, mask = _tokenize_plain(tokenizer, messages)
    else:
        ids, mask = _tokenize_chat(tokenizer, messages)
    if 1 not in mask:
        raise TemplateError("a conversation has no assistant tokens to train on")
    return {"input_ids": ids, "assistant_masks": mask}


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """Ids generation stops at: the tokenizer's eos, the model's generation_config eos (one or a list), and
    every END_TOKENS entry the tokenizer has as a special token (so a config that lists only one is not
    trusted alone)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured) if isinstance(configured, (list, tuple)) else {configured}
    special = set(tokenizer.all_special_tokens) | {str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
                                                  if getattr(t, "special", False)}
    vocab = tokenizer.get_vocab()
    ids |= {vocab[t] for t in END_TOKENS if t in special and t in vocab}
    return sorted(i for i in ids if i is not None)


def prompt_ids(tokenizer, messages: list[dict], prompt_format: str) -> list[int]:
    """Token ids that ask the model for the next doctor turn (messages end with a user turn): exactly the
    context training put before that turn (earlier doctor turns end with their EOS, as trained)."""
    if prompt_format == "plain":
        return _tokenize_plain(tokenizer, messages)[0]
    return _chat_ids(tokenizer, messages, generation_prompt=True)


# ----- rows longer than trainer.max_length ------------------------------------------------------------------
# TRL would cut such rows silently (and with packing, a cut answer loses its EOS); medchat cuts or drops them
# itself, before TRL sees them, and counts every case (medchat.data.cache.fit_rows, cached or not).
TRUNCATION_WARN_FRACTION = 0.05  # warn when more than this share of a split's rows is too long


def fit_to_length(row: dict, max_length: int, truncation: str, eos_id: int | None) -> tuple[dict | None, list[str]]:
    """-> (the row as trained, or None if dropped; what happened to it: counter names)."""
    ids, mask = row["input_ids"], row["assistant_masks"]
    if len(ids) <= max_length:
        return row, []
    if truncation == "drop":
        return None, ["too_long", "dropped_too_long"]
    ids, mask = ids[:max_length], mask[:max_length]
    events = ["too_long", "cut_to_max_length"]
    if 1 not in mask:  # the cut left only prompt tokens: nothing to learn from
        return None, events + ["dropped_no_trained_token"]
    trained_before = [t for t, m in zip(row["input_ids"], row["assistant_masks"]) if m]
    trained_after = [t for t, m in zip(ids, mask) if m]
    if trained_before and trained_before[-1] == eos_id and trained_after[-1] != eos_id:
        events.append("cut_answer_lost_eos")  # the model is taught to go on where the answer was cut
    return {**row, "input_ids": ids, "assistant_masks": mask}, events


TRUNCATION_EVENTS = ("too_long", "dropped_too_long", "cut_to_max_length", "cut_answer_lost_eos",
                     "dropped_no_trained_token")


def check_can_tokenize(tokenizer, prompt_format: str) -> None:
    """Before any row is tokenized (and before the model loads): a chat_template run needs a template."""
    if prompt_format == "chat_template" and not getattr(tokenizer, "chat_template", None):
        raise TemplateError("dataset.prompt_format=chat_template but the tokenizer has no chat template (a base "
                            "model's tokenizer often has none): set model.chat_template=chatml or inst (or a .jinja "
                            "file), or dataset.prompt_format=plain")


def report_truncation(name: str, counts: dict[str, int], max_length: int, truncation: str) -> None:
    """Log the counts, warn above TRUNCATION_WARN_FRACTION, refuse a split left with no row."""
    import logging

    log = logging.getLogger(__name__)
    log.info("%s rows vs trainer.max_length=%d (truncation=%s): %s", name, max_length, truncation, counts)
    if counts["rows"] and counts["too_long"] / counts["rows"] > TRUNCATION_WARN_FRACTION:
        log.warning("%d of %d %s rows are longer than trainer.max_length=%d (%s: %d dropped, %d cut, %d cut "
                    "answers lost their EOS); raise trainer.max_length or check the data", counts["too_long"],
                    counts["rows"], name, max_length, truncation, counts["dropped_too_long"] +
                    counts["dropped_no_trained_token"], counts["cut_to_max_length"], counts["cut_answer_lost_eos"])
    if counts["rows"] and not counts["kept"]:
        raise TemplateError(f"no {name} row fits trainer.max_length={max_length} with a doctor token left "
                            f"({counts}); raise trainer.max_length or use trainer.truncation=keep")
