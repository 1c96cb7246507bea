"""Load a finished run for inference and stream the model's answers: what chat, app and export share.

A run dir is all that is needed: its config (RUN/.hydra/config.yaml, or RUN/config.yaml for runs started
by calling `pipeline.train` directly) says which base model, chat template, system prompt and prompt
format were trained; RUN/adapter holds the adapter and the tokenizer.

    from medchat.inference import ChatModel, GenerationSettings
    bot = ChatModel.load("runs/2026-11-22_10-00-00")
    print(bot.reply(bot.conversation([], "I have had a headache for three days."), GenerationSettings()))

Everything that can be wrong with the inputs (no run dir, no adapter, an adapter trained on another base,
an empty question) is reported before any weights are read.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from medchat.config import CHOICES, ConfigError, ModelConfig, QuantConfig

log = logging.getLogger(__name__)

DISCLAIMER = (
    "Not medical advice. This is a research model fine-tuned on doctor-patient conversations: its answers "
    "can be wrong, incomplete or unsafe. Do not use it to diagnose or treat anyone; ask a qualified clinician, "
    "and in an emergency call your local emergency number."
)


QUANT_MODES = CHOICES["quant.mode"]


class AdapterMismatch(ConfigError):
    """The adapter was trained on another base model than the one about to be loaded."""


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.7  # 0: greedy decoding
    top_p: float = 0.9
    repetition_penalty: float = 1.1

    def check(self) -> None:
        if self.max_new_tokens <= 0:
            raise ConfigError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"max_new_tokens": int(self.max_new_tokens), "do_sample": False,
                    "repetition_penalty": float(self.repetition_penalty)}
        return {"max_new_tokens": int(self.max_new_tokens), "do_sample": True, "temperature": float(self.temperature),
                "top_p": float(self.top_p), "repetition_penalty": float(self.repetition_penalty)}


# ----- the run dir -------------------------------------------------------------------------------------

def config_file(run_dir: str | Path) -> Path:
    """The run's composed config: Hydra's copy when train.py made the run, else the one pipeline.train wrote."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / ".hydra" / "config.yaml", run_dir / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"run_dir={run_dir}: no config found (expected .hydra/config.yaml or config.yaml)")


def check_run_dir(run_dir: str | Path | None) -> Path:
    """The run dir exists and holds a config and an adapter; the message says which is missing."""
    if run_dir is None or str(run_dir).strip() == "":
        raise ConfigError("run_dir is not set: pass run_dir=DIR, a directory made by train.py")
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir={run_dir} does not exist or is not a directory")
    if (run_dir / "adapter_config.json").is_file() and not (run_dir / "adapter").is_dir():
        raise FileNotFoundError(f"run_dir={run_dir} is an adapter folder, not a run dir: pass its parent, "
                                f"run_dir={run_dir.parent}")
    config_file(run_dir)
    if not (run_dir / "adapter" / "adapter_config.json").is_file():
        status = _status(run_dir)
        hint = f" (the run's status is {status!r})" if status else ""
        raise FileNotFoundError(f"run_dir={run_dir} has no trained adapter: {run_dir}/adapter/adapter_config.json "
                                f"is missing{hint}")
    return run_dir


def _status(run_dir: Path) -> str | None:
    from medchat.rundir import read_status

    status = read_status(run_dir)
    return status["state"] if status else None


def run_config(run_dir: str | Path) -> DictConfig:
    """The run's config, with the model and quant sections checked against their schemas."""
    cfg = OmegaConf.load(config_file(run_dir))
    for key, schema in (("model", ModelConfig), ("quant", QuantConfig)):
        if key not in cfg:
            raise ConfigError(f"{config_file(run_dir)} has no `{key}` section")
        cfg[key] = OmegaConf.merge(OmegaConf.structured(schema), cfg[key])
    return cfg


def run_system_prompt(run_dir: str | Path, cfg: DictConfig) -> str | None:
    """The system prompt the run trained with: dataset.system_prompt, else the one every training conversation
    shared, as training recorded it in split.json (`train_system_prompt`); None when there was none (the
    chat template's own default then applies, as it did in training) or the training rows' differed."""
    if cfg.dataset.get("system_prompt"):
        return cfg.dataset.system_prompt
    split = Path(run_dir) / "split.json"
    return json.loads(split.read_text()).get("train_system_prompt") if split.is_file() else None


def adapter_base(run_dir: str | Path) -> str:
    return json.loads((Path(run_dir) / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists() and pa.resolve() == pb.resolve():
        return True
    # medchat's tiny model lives in a per-user cache; its directory name is a hash of its shape and data
    return pa.name.startswith("tiny-") and pa.name == pb.name


def check_adapter_base(run_dir: str | Path, base: str, explicit: bool = False) -> None:
    """Refuse an adapter trained on another base, before loading anything."""
    trained_on = adapter_base(run_dir)
    if _same_model(trained_on, base):
        return
    where = "base=" if explicit else f"model.name_or_path in {config_file(run_dir)}"
    raise AdapterMismatch(
        f"the adapter in {Path(run_dir) / 'adapter'} was trained on base model {trained_on!r}, but the base to load "
        f"is {base!r} (from {where}). An adapter only works on the model it was trained on; pass "
        f"base={trained_on} (or a local copy of it with check_base=false)"
    )


# ----- the model ---------------------------------------------------------------------------------------

def load_adapter_model(run_dir: str | Path, model_cfg, quant_cfg, base: str | None = None, check_base: bool = True):
    """Base (quantized as quant_cfg says) + the run's adapter, eval mode, and the run's tokenizer."""
    from medchat import modeling

    run_dir = Path(run_dir)
    path = base or modeling.model_path(model_cfg)
    if check_base:
        check_adapter_base(run_dir, path, explicit=base is not None)
    modeling.check_quantization(quant_cfg)
    tokenizer = modeling.load_tokenizer(model_cfg, path=str(run_dir / "adapter"))
    model = attach_adapter(modeling.load_model(model_cfg, quant_cfg, path), tokenizer, run_dir, path)
    model.eval()
    return model, tokenizer


def attach_adapter(model, tokenizer, run_dir: str | Path, path: str):
    """PeftModel of `model` with the run's adapter; a base that does not fit is named, not a wall of shapes."""
    from peft import PeftModel

    run_dir = Path(run_dir)
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise AdapterMismatch(f"the run's tokenizer has {len(tokenizer)} tokens but base model {path!r} embeds only "
                              f"{vocab}: this adapter was not trained on this base")
    try:
        return PeftModel.from_pretrained(model, run_dir / "adapter")
    except RuntimeError as e:
        if "size mismatch" not in str(e):
            raise
        first = next(line.strip() for line in str(e).splitlines() if "size mismatch" in line)
        raise AdapterMismatch(f"the adapter in {run_dir / 'adapter'} does not fit base model {path!r}: {first}") from e


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

    def __init__(self, model, tokenizer, prompt_format: str, system_prompt: str | None, max_context: int):
        self.model, self.tokenizer = model, tokenizer
        self.prompt_format, self.system_prompt, self.max_context = prompt_format, system_prompt, max_context
        from medchat.formatting import stop_token_ids

        self.eos_token_ids = stop_token_ids(tokenizer, model)  # every end token of the family, not only eos

    @classmethod
    def load(cls, run_dir, quant: str | None = None, base: str | None = None, check_base: bool = True,
             system_prompt: str | None = None, max_context: int | None = None) -> "ChatModel":
        """quant: null = as trained (a QLoRA run's base is loaded in 4-bit again); system_prompt: null = the run's."""
        if quant is not None and quant not in QUANT_MODES:
            raise ConfigError(f"quant={quant!r} is not one of {', '.join(QUANT_MODES)} (or null: as trained)")
        run_dir = check_run_dir(run_dir)
        cfg = run_config(run_dir)
        quant_cfg = cfg.quant if quant is None else OmegaConf.merge(cfg.quant, {"mode": quant})
        model, tokenizer = load_adapter_model(run_dir, cfg.model, quant_cfg, base, check_base)
        prompt = run_system_prompt(run_dir, cfg) if system_prompt is None else (system_prompt or None)
        return cls(model, tokenizer, cfg.dataset.get("prompt_format", "chat_template"), prompt,
                   max_context or int(cfg.trainer.max_length))

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
        import torch
        from transformers import TextIteratorStreamer

        settings.check()
        ids = torch.tensor([self.prompt_ids(messages, settings.max_new_tokens)], device=self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def generate():
            try:
                with torch.no_grad():
                    self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                                        eos_token_id=self.eos_token_ids, pad_token_id=self.tokenizer.pad_token_id,
                                        use_cache=True, **settings.generate_kwargs())
            except BaseException as e:  # surfaced in the caller's thread below, after the streamer is released
                failure.append(e)
                streamer.end()

        thread = threading.Thread(target=generate, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
        if failure:
            raise failure[0]

    def reply(self, messages: list[dict], settings: GenerationSettings) -> str:
        return "".join(self.stream(messages, settings)).strip()
