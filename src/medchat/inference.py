"""A finished run as a chat partner: its model (opened by medchat.runs, built by medchat.run_models), prompt
conventions, streamed answers.

What chat and the app share. The run's config says which chat template, system prompt and prompt format
were trained; medchat.runs opens the run dir, medchat.run_models checks the adapter against its base and builds
the model.

    from medchat.config import GenerationSettings
    from medchat.inference import ChatModel
    bot = ChatModel.load("runs/2026-11-22_10-00-00")
    print(bot.reply(bot.conversation([], "I have had a headache for three days."), GenerationSettings()))

Everything that can be wrong with the inputs (no run dir, no adapter, an adapter trained on another base,
an empty question) is reported before any weights are read.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterator

from medchat.config import CHOICES, ConfigError, GenerationSettings

log = logging.getLogger(__name__)

DISCLAIMER = (
    "Not medical advice. This is a research model fine-tuned on doctor-patient conversations: its answers "
    "can be wrong, incomplete or unsafe. Do not use it to diagnose or treat anyone; ask a qualified clinician, "
    "and in an emergency call your local emergency number."
)


QUANT_MODES = CHOICES["quant.mode"]


def chat_settings(max_new_tokens: int, temperature: float, top_p: float, repetition_penalty: float,
                  top_k: int = 0) -> GenerationSettings:
    """Chat's and the app's knobs (temperature 0 = greedy) -> checked GenerationSettings."""
    settings = GenerationSettings(max_new_tokens=int(max_new_tokens), do_sample=float(temperature) > 0,
                                  temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                                  repetition_penalty=float(repetition_penalty))
    settings.check()
    return settings


def message_text(content: Any) -> str:
    """A chat message's text, whether plain or in the list-of-parts form some UIs (Gradio) send."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(message_text(part) for part in content if not isinstance(part, dict) or
                       part.get("type", "text") == "text")
    return "" if content is None else str(content)


class ChatModel:
    """A run's model, tokenizer and prompt conventions, ready to answer."""

    def __init__(self, model, tokenizer, prompt_format: str, system_prompt: str | None, max_context: int,
                 cache_implementation: str | None = "auto"):
        self.model, self.tokenizer = model, tokenizer
        self.prompt_format, self.system_prompt, self.max_context = prompt_format, system_prompt, max_context
        # auto: static on a GPU, dynamic on CPU; "static" forces it (tests); None/"dynamic": always dynamic.
        self.cache_implementation = None if cache_implementation == "dynamic" else cache_implementation
        self._cache = None
        self._cache_kwarg = "past_key_values"
        on_gpu = getattr(getattr(model, "device", None), "type", "cpu") == "cuda"
        self._graph_state = _cuda_graph_state() if on_gpu else {}

    @classmethod
    def load(cls, run_dir, quant: str | None = None, base: str | None = None, check_base: bool = True,
             system_prompt: str | None = None, max_context: int | None = None, merge: bool = True) -> "ChatModel":
        """quant: null = as trained (a QLoRA run's base is loaded in 4-bit again); merge: fold the adapter into
        the (dequantized) base, as evaluate.py does; system_prompt: null = the run's."""
        from medchat import run_models, runs

        if quant is not None and quant not in QUANT_MODES:
            raise ConfigError(f"quant={quant!r} is not one of {', '.join(QUANT_MODES)} (or null: as trained)")
        run = runs.open_run(run_dir)
        model, tokenizer = run_models.load_for_generation(run, quant=quant, base=base, check_name=check_base, merge=merge)
        prompt = run.system_prompt() if system_prompt is None else (system_prompt or None)
        return cls(model, tokenizer, run.cfg.dataset.get("prompt_format", "chat_template"), prompt,
                   max_context or int(run.cfg.trainer.max_length))

    def conversation(self, history: list[dict], question: str) -> list[dict]:
        """System prompt + earlier turns + the new question, as the model was trained to see them."""
        if not question or not question.strip():
            raise ConfigError("the prompt is empty: type a question")
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for m in history:
            if m.get("role") in ("user", "assistant"):
                messages.append({"role": m["role"], "content": message_text(m.get("content"))})
        return messages + [{"role": "user", "content": question.strip()}]

    def prompt_ids(self, messages: list[dict], max_new_tokens: int) -> list[int]:
        """Token ids of the prompt; the oldest exchanges are dropped until prompt + answer fit max_context."""
        from medchat.formatting import prompt_ids

        messages = list(messages)
        while True:
            ids = prompt_ids(self.tokenizer, messages, self.prompt_format)
            if len(ids) + max_new_tokens <= self.max_context:
                return ids
            first = 1 if messages[0]["role"] == "system" else 0
            if len(messages) - first <= 1:
                raise ConfigError(f"the question is {len(ids)} tokens: with max_new_tokens={max_new_tokens} it does "
                                  f"not fit the {self.max_context}-token context (max_context)")
            del messages[first:first + 2]  # the oldest question and its answer

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        """Yield the answer's text piece by piece as it is generated; stops at the tokenizer's eos."""
        settings.check()
        yield from self.stream_ids(self.prompt_ids(messages, settings.max_new_tokens), settings)

    def stream_ids(self, ids: list[int], settings: GenerationSettings) -> Iterator[str]:
        """stream() for prompt token ids that already fit max_context (what the generation bench times)."""
        import torch
        from transformers import TextIteratorStreamer

        from medchat import decoding

        if len(ids) + settings.max_new_tokens > self.max_context:
            raise ConfigError(f"prompt ({len(ids)} tokens) + max_new_tokens ({settings.max_new_tokens}) exceed "
                              f"max_context ({self.max_context})")
        ids = torch.tensor([ids], device=self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        # evaluate.py's and make_pairs' config for the same settings (stop ids included); the KV cache is chat's own
        config = decoding.generation_config(settings, self.model, self.tokenizer)
        kwargs = {}
        cache = self._reusable_cache()
        if cache is not None:
            cache.reset()
            kwargs[self._cache_kwarg] = cache
        failure: list[BaseException] = []

        def generate():
            try:
                _adopt_cuda_graph_state(self._graph_state)
                with torch.no_grad():
                    decoding.generate(self.model, config, input_ids=ids, attention_mask=torch.ones_like(ids),
                                      streamer=streamer, **kwargs)
            except BaseException as e:  # surfaced in the caller's thread below, after the streamer is released
                failure.append(e)
                streamer.end()

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if failure:
            raise failure[0]

    def _reusable_cache(self):
        """On a GPU (evaluate.py's rule, medchat.evaluation.generation.resolve_cache), one static KV cache of
        max_context positions, kept for the whole chat: every answer decodes with the same shapes, so
        transformers compiles the decoding step once (the dynamic cache re-launches thousands of small kernels
        per token, host-bound at batch 1: bench/RESULTS.md). None: the dynamic cache (CPU)."""
        from medchat.evaluation.generation import resolve_cache

        if self.cache_implementation is None:
            return None
        if self._cache is None:
            choice = resolve_cache(self.cache_implementation, self.model.device)
            if choice == "static" and self.cache_implementation == "auto" and _has_bitsandbytes_layers(self.model):
                # transformers compiles decoding for a static cache on a GPU, and compiling through
                # bitsandbytes' 4-bit layers failed (AssertionError, H200, bench/RESULTS.md): 4-bit chat stays dynamic.
                choice = None
            if choice != "static":
                self.cache_implementation = None  # decided once per ChatModel
                return None
            import inspect

            from transformers import StaticCache

            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            # transformers 5.2x renamed generate's past_key_values to cache (the GPU image has 5.17).
            self._cache_kwarg = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
            self._cache = StaticCache(config=base.config, max_cache_len=self.max_context)
        return self._cache

    def reply(self, messages: list[dict], settings: GenerationSettings) -> str:
        return "".join(self.stream(messages, settings)).strip()


def _cuda_graph_state() -> dict:
    """The CUDA-graph tree state of this thread, for the generation thread of stream() to share.

    A static cache makes transformers compile decoding with CUDA graphs ("reduce-overhead"), whose trees keep
    their state in the thread-locals of the thread that imported torch._inductor.cudagraph_trees. torch 2.11
    (the GPU image's) asserts, with an empty AssertionError, when another plain thread looks it up: chat's
    streaming thread after evaluate.py's generation in the main thread failed so (issue 19, H100). torch 2.13
    initialises the state per thread instead (`_initialize_tls`); sharing the creator's state is right for both,
    since ChatModel generates one answer at a time. Remove once the oldest supported torch has `_initialize_tls`."""
    try:
        from torch._inductor import cudagraph_trees
    except Exception:  # a torch without Inductor: nothing to share
        return {}
    names = ("tree_manager_containers", "tree_manager_locks")
    return {n: getattr(cudagraph_trees.local, n) for n in names if hasattr(cudagraph_trees.local, n)}


def _adopt_cuda_graph_state(state: dict) -> None:
    if not state:
        return
    from torch._inductor import cudagraph_trees

    for name, value in state.items():
        if not hasattr(cudagraph_trees.local, name):
            setattr(cudagraph_trees.local, name, value)


def _has_bitsandbytes_layers(model) -> bool:
    return any(type(m).__module__.startswith("bitsandbytes") for m in model.modules())
