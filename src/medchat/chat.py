"""Talk to a trained run in the terminal: streamed answers, multi-turn history, the run's own prompt format.

    python -m medchat.chat run_dir=runs/2026-11-22_10-00-00                      # interactive
    python -m medchat.chat run_dir=runs/2026-11-22_10-00-00 prompt="I have a sore throat and fever."
    python -m medchat.chat run_dir=RUN temperature=0 max_new_tokens=128       # greedy, shorter answers
    python -m medchat.chat run_dir=RUN decoding=eval                           # evaluate.py's settings: greedy, no penalty
    python -m medchat.chat run_dir=RUN quant=none                              # base in 16/32-bit, not 4-bit
    python -m medchat.chat run_dir=RUN merge=false                             # adapter unmerged (4-bit memory)

With `prompt=...` the answer alone goes to stdout (for scripts); the medical disclaimer, the decoding
settings and the system prompt in use (a banner), and any diagnostics go to stderr. Chat samples by
default (temperature 0.7, top_p 0.9, top_k 0 = off, repetition penalty 1.1; medchat.decoding builds the
config, so the model's own generation defaults never apply) while evaluate.py decodes greedily with no
penalty: `decoding=eval` chats with evaluate.py's settings (greedy, repetition_penalty 1.0, and the
max_new_tokens of the run's full evaluation when there is one), so the answers are the ones evaluated. Interactive commands: /reset (forget the conversation), /exit (or Ctrl-D).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import hydra
from omegaconf import DictConfig

from medchat.hydra_apps import quiet_libraries, quote_free_text, store_app_config, user_errors
from medchat.config import ConfigError


@dataclass
class ChatConfig:
    run_dir: Optional[str] = None
    prompt: Optional[str] = None  # answer this one question and exit
    system_prompt: Optional[str] = None  # null: the run's; "": none
    quant: Optional[str] = None  # null: as trained (nf4 | fp4 | int8 | none)
    # true: the adapter folded into the base (a 4-bit base dequantized to 16-bit first), as evaluate.py scores it;
    # ~10x faster decoding on a GPU (static cache + compiled decoding: bench/RESULTS.md), 16-bit memory.
    # false: the base as `quant` says with the adapter unmerged (4-bit memory, as during training)
    merge: bool = True
    base: Optional[str] = None  # null: the run's base model; a local copy of it, say
    check_base: bool = True  # false: skip the adapter's recorded base name (its shapes are still checked)
    max_context: Optional[int] = None  # null: the run's trainer.max_length
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0  # 0: no top-k cut (top_p alone), as evaluate.py samples; never the model's own default
    repetition_penalty: float = 1.1
    decoding: str = "sample"  # sample: the settings above | eval: evaluate.py's (greedy, no repetition penalty)
    seed: Optional[int] = None
    verbose: bool = False


store_app_config("chat", ChatConfig, __doc__)


def settings_from(cfg):
    from medchat.inference import chat_settings

    if cfg.decoding not in ("sample", "eval"):
        raise ConfigError(f"decoding={cfg.decoding!r} is not one of sample, eval")
    if cfg.decoding == "eval":  # evaluate.py's defaults: greedy, no repetition penalty
        return chat_settings(_evaluated_max_new_tokens(cfg.run_dir) or cfg.max_new_tokens, 0, 1.0, 1.0)
    return chat_settings(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.repetition_penalty, cfg.top_k)


def _evaluated_max_new_tokens(run_dir) -> int | None:
    from medchat.evaluation import locate

    return (locate.full_heldout(run_dir)[1].get("generation") or {}).get("max_new_tokens")


def banner(settings, system_prompt: str | None) -> str:
    """What the answers will be generated with, said before the first one."""
    if not settings.do_sample:
        how = f"greedy, repetition penalty {settings.repetition_penalty:g}"
    else:
        top_k = "top_k off" if settings.top_k == 0 else f"top_k {settings.top_k}"
        how = (f"sampled: temperature {settings.temperature:g}, top_p {settings.top_p:g}, {top_k}, repetition penalty "
               f"{settings.repetition_penalty:g}")
    same = not settings.do_sample and settings.repetition_penalty == 1.0
    note = "as evaluate.py decodes" if same else "evaluate.py decodes greedily, without penalty: decoding=eval"
    system = f"system prompt: {system_prompt!r}" if system_prompt else "system prompt: none (the chat template's default)"
    return f"[decoding: {how}, at most {settings.max_new_tokens} new tokens ({note}); {system}]"


def answer(bot, history: list[dict], question: str, settings, out=sys.stdout) -> str:
    """Stream one answer to `out` and return it."""
    pieces = []
    for piece in bot.stream(bot.conversation(history, question), settings):
        if not pieces:
            piece = piece.lstrip()
            if not piece:
                continue
        pieces.append(piece)
        out.write(piece)
        out.flush()
    out.write("\n")
    if not pieces:
        print("(the model's answer was empty)", file=sys.stderr)
    return "".join(pieces).strip()


def interactive(bot, settings, read=input, out=sys.stdout) -> None:
    history: list[dict] = []
    print("Type a question; /reset forgets the conversation, /exit or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            question = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if not question:
            continue
        if question in ("/exit", "/quit"):
            return
        if question == "/reset":
            history = []
            print("(conversation cleared)", file=sys.stderr)
            continue
        out.write("doctor> ")
        try:
            reply = answer(bot, history, question, settings, out)
        except ConfigError as e:  # e.g. a question too long for the context: say so and carry on
            print(f"error: {e}", file=sys.stderr)
            continue
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


@user_errors("medchat.chat", ChatConfig)
def run(cfg) -> None:
    from medchat.inference import DISCLAIMER, ChatModel
    from medchat.runs import open_run

    open_run(cfg.run_dir)  # before anything heavy is imported
    if cfg.prompt is not None and not cfg.prompt.strip():
        raise ConfigError('prompt is empty: pass prompt="your question", or leave it out to chat interactively')
    settings = settings_from(cfg)
    quiet_libraries(cfg.verbose)
    bot = ChatModel.load(cfg.run_dir, quant=cfg.quant, base=cfg.base, check_base=cfg.check_base, merge=cfg.merge,
                         system_prompt=cfg.system_prompt, max_context=cfg.max_context)
    print(f"[{DISCLAIMER}]", file=sys.stderr)
    print(banner(settings, bot.system_prompt), file=sys.stderr)
    if cfg.seed is not None:
        from transformers import set_seed

        set_seed(cfg.seed)
    if cfg.prompt is not None:
        answer(bot, [], cfg.prompt, settings)
    else:
        interactive(bot, settings)


@hydra.main(version_base="1.3", config_path=None, config_name="chat")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    quote_free_text(("prompt", "system_prompt"))
    _hydra_main()


if __name__ == "__main__":
    main()
