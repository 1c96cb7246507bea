"""One source of decoding settings: medchat's GenerationSettings -> the transformers GenerationConfig that
evaluate.py, chat and the app, make_pairs and the training-time generation callback hand to `model.generate`,
and the one call through which they all generate.

The model's own generation settings must not decide medchat's decoding. transformers (5.x,
`GenerationMixin._prepare_generation_config`) fills every field that a passed GenerationConfig leaves unset from
`model.generation_config` (an instruct model's do_sample=True, temperature, top_k, no_repeat_ngram_size, ...) and
then from its own defaults (top_k=50). So:

- `generation_config` sets every field medchat means: max_new_tokens, do_sample, repetition_penalty, one beam,
  and when sampling temperature, top_p and top_k (explicit; 0 = no top-k cut). Greedy sets no sampling field
  (no sampler runs).
- `generate` runs `model.generate` with the model's generation config swapped for a blank one, so no field
  medchat leaves unset can come from the model; what is left unset falls to transformers' fixed defaults.

The stop ids still come from the model: `formatting.stop_token_ids` reads the eos ids of its generation config
(an instruct model's turn-end token) before the swap, so answers stop where the model was trained to stop.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

# fields the config sets only when sampling; greedy leaves them unset (recorded as null)
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
# one blank swap at a time: two threads generating on one model would restore each other's swap
_SWAP = threading.Lock()


def decoding_values(settings) -> dict:
    """The decoding fields a GenerationConfig built from `settings` holds (what provenance records)."""
    values = {"max_new_tokens": int(settings.max_new_tokens), "do_sample": bool(settings.do_sample),
              "num_beams": 1, "repetition_penalty": float(settings.repetition_penalty)}
    if settings.do_sample:
        values.update(temperature=float(settings.temperature), top_p=float(settings.top_p),
                      top_k=int(settings.top_k))
    else:
        values.update(dict.fromkeys(SAMPLING_FIELDS))
    return values


def generation_config(settings, model, tokenizer, cache_implementation: str | None = None):
    """A GenerationConfig with every decoding field from `settings` (medchat.config.GenerationSettings) and the
    stop ids of the tokenizer and the model; `cache_implementation`: static, or None / dynamic (the default)."""
    from transformers import GenerationConfig

    from medchat.formatting import stop_token_ids

    settings.check()
    # pad may be one of the stop ids (Qwen2's <|endoftext|> is both): only finished rows are padded. It must
    # not be the eos, which is what load_tokenizer guarantees.
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError("generation needs a pad token distinct from EOS (medchat.modeling.load_tokenizer sets one)")
    values = {k: v for k, v in decoding_values(settings).items() if v is not None}
    return GenerationConfig(
        **values,
        eos_token_id=stop_token_ids(tokenizer, model),
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        cache_implementation=cache_implementation if cache_implementation != "dynamic" else None,
    )


def _owner(model):
    """The transformers model whose generation_config generate() reads (PEFT's wrapper copies it from there)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def model_defaults_blanked(model):
    """The model's generation config replaced by a blank one for the duration (restored after, also on error)."""
    from transformers import GenerationConfig

    owner = _owner(model)
    with _SWAP:
        own = owner.generation_config
        owner.generation_config = GenerationConfig()
        try:
            yield
        finally:
            owner.generation_config = own


def generate(model, config, **inputs):
    """model.generate(**inputs) with `config` (from generation_config) and nothing from the model's own."""
    with model_defaults_blanked(model):
        return model.generate(**inputs, generation_config=config)
