"""The Ollama Modelfile beside an exported GGUF (medchat.gguf_export): the run's chat format as Ollama's Go
template, its stop tokens and the medical disclaimer as SYSTEM.

A chat format is kept as pieces around the contents (ChatFormat), from which both the Go template and a Python
rendering are built; `check_chat` renders a multi-turn probe both ways and compares it with the run's own chat
template (or medchat's plain format) before anything is written, so a Modelfile that would prompt the model
differently from training is reported, not silently shipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from medchat.config import ConfigError

MODELFILE = "Modelfile"


@dataclass(frozen=True)
class ChatFormat:
    """One family's turn format as pieces around the contents: the Modelfile's Go template and the check
    against the run's own chat template are both built from these, so they cannot disagree."""
    name: str
    user_first: str  # before the first user turn (after the system block; llama.cpp adds the bos itself)
    user: str  # before every later user turn
    user_end: str
    assistant: str
    assistant_end: str
    generation: str  # what asks for the next assistant turn
    system: str = ""
    system_end: str = ""
    system_in_first_user: bool = False  # [INST]: the system text opens the first user turn


def chat_formats(eos: str) -> dict[str, ChatFormat]:
    return {
        "chatml": ChatFormat("ChatML", "<|im_start|>user\n", "<|im_start|>user\n", "<|im_end|>\n",
                             "<|im_start|>assistant\n", eos + "\n", "<|im_start|>assistant\n",
                             "<|im_start|>system\n", "<|im_end|>\n"),
        "llama3": ChatFormat("Llama-3", *(["<|start_header_id|>user<|end_header_id|>\n\n"] * 2), "<|eot_id|>",
                             "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>",
                             "<|start_header_id|>assistant<|end_header_id|>\n\n",
                             "<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"),
        "inst": ChatFormat("Mistral [INST]", "[INST] ", "[INST] ", " [/INST]", " ", eos, "", "", "\n\n",
                           system_in_first_user=True),
        "llama2": ChatFormat("Llama-2 [INST] <<SYS>>", "[INST] ", "<s>[INST] ", " [/INST]", " ", " " + eos, "",
                             "<<SYS>>\n", "\n<</SYS>>\n\n", system_in_first_user=True),
    }


def plain_format(eos: str) -> ChatFormat:
    """dataset.prompt_format=plain (medchat.formatting's `### Patient query:` text), as a chat format."""
    from medchat.formatting import PLAIN_ANSWER, PLAIN_QUERY

    return ChatFormat("plain (### Patient query / ### Doctor opinion)", PLAIN_QUERY, "\n" + PLAIN_QUERY,
                      "\n" + PLAIN_ANSWER, " ", eos, "", "", "\n\n")


def render(fmt: ChatFormat, system: str | None, messages: list[dict], generation: bool = True) -> str:
    """The prompt text the Modelfile's template produces (the same logic as `go_template`)."""
    out, first = [], True
    if system and not fmt.system_in_first_user:
        out.append(fmt.system + system + fmt.system_end)
    for m in messages:
        if m["role"] == "user":
            out.append(fmt.user_first if first else fmt.user)
            if first and system and fmt.system_in_first_user:
                out.append(fmt.system + system + fmt.system_end)
            out.append(m["content"] + fmt.user_end)
            first = False
        elif m["role"] == "assistant":
            out.append(fmt.assistant + m["content"] + fmt.assistant_end)
    return "".join(out) + (fmt.generation if generation else "")


def go_template(fmt: ChatFormat) -> str:
    """Ollama's TEMPLATE (Go text/template): .System is the system prompt, .Messages the turns. No trim markers
    (`{{-`): the pieces' own newlines are part of the format."""
    system = fmt.system + "{{ $.System }}" + fmt.system_end
    head = "" if fmt.system_in_first_user else "{{ if .System }}" + system + "{{ end }}"
    if fmt.user_first == fmt.user and not fmt.system_in_first_user:
        user = fmt.user
    else:  # the first user turn opens differently: track it in $first
        first = fmt.user_first + ("{{ if $.System }}" + system + "{{ end }}" if fmt.system_in_first_user else "")
        head = "{{ $first := true }}" + head
        user = "{{ if $first }}" + first + "{{ else }}" + fmt.user + "{{ end }}"
    user_end = fmt.user_end + ("{{ $first = false }}" if head.startswith("{{ $first") else "")
    return (head + "{{ range .Messages }}"
            '{{ if eq .Role "user" }}' + user + "{{ .Content }}" + user_end +
            '{{ else if eq .Role "assistant" }}' + fmt.assistant + "{{ .Content }}" + fmt.assistant_end +
            "{{ end }}{{ end }}" + fmt.generation)


PROBE = [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]


def _family(rendered: str) -> str | None:
    if "<|im_start|>" in rendered:
        return "chatml"
    if "<|start_header_id|>" in rendered:
        return "llama3"
    if "<<SYS>>" in rendered:
        return "llama2"
    if "[INST]" in rendered:
        return "inst"
    return None


def adds_bos(tokenizer) -> bool:
    ids = tokenizer("x")["input_ids"]
    return tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]


def check_chat(tokenizer, prompt_format: str) -> tuple[ChatFormat, str | None, bool]:
    """(the Modelfile's chat format for the run, why it differs from the run's own rendering or None, whether
    the prompt starts with the bos token: llama.cpp then adds it, as Ollama's templates never write it)."""
    eos, bos = tokenizer.eos_token or "", tokenizer.bos_token
    if prompt_format == "plain":
        from medchat.formatting import _plain_prompt

        fmt = plain_format(eos)
        expected = "".join(text for text, _ in _plain_prompt([{"role": "system", "content": "S"}] + PROBE))
        expected = expected.replace(" A1", " A1" + eos)
        return fmt, _difference(render(fmt, "S", PROBE, generation=False), expected), adds_bos(tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("format=gguf: the run's tokenizer has no chat template to describe in the Modelfile")
    system = "S"
    try:
        rendered = tokenizer.apply_chat_template([{"role": "system", "content": system}] + PROBE, tokenize=False,
                                                 add_generation_prompt=True)
    except Exception:  # a template that refuses system messages (Mistral-Instruct v0.1): compare without one
        system = None
        rendered = tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    family = _family(rendered)
    if family is None:
        raise ConfigError("format=gguf: the run's chat template is none of ChatML, Llama-3 or [INST], so medchat "
                          "cannot write the Modelfile's TEMPLATE for it; pass gguf.modelfile=false to write the GGUF "
                          "alone (it carries the template in its metadata)")
    fmt = chat_formats(eos)[family]
    # A leading bos that is not the format's own first token (SmolLM2's bos is ChatML's <|im_start|>) is left
    # to llama.cpp, which adds it to every prompt (add_bos_token), as Ollama's templates never write it.
    opening = fmt.system if system and not fmt.system_in_first_user else fmt.user_first
    starts_with_bos = bool(bos) and rendered.startswith(bos) and not opening.startswith(bos)
    if starts_with_bos:
        rendered = rendered[len(bos):]
    differs = _difference(render(fmt, system, PROBE), rendered)
    if system is None and differs is None:
        differs = "the run's chat template refuses system messages; the Modelfile puts SYSTEM in the first user turn"
    return fmt, differs, starts_with_bos or adds_bos(tokenizer)


def _difference(ours: str, theirs: str) -> str | None:
    if ours == theirs:
        return None
    i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return f"the Modelfile renders {ours[max(0, i - 20):i + 40]!r} where the run's template renders " \
           f"{theirs[max(0, i - 20):i + 40]!r}"


def _quoted(text: str) -> str:
    if '"""' in text:
        raise ConfigError(f'format=gguf: {text[:60]!r}... contains """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile(chat: ChatFormat, stops: list[str], system: str, gguf_file: str = "model.gguf") -> str:
    """Ollama's Modelfile: the weights, the chat template in Go-template syntax, the stop tokens, the system
    prompt (the medical disclaimer, after the run's own system prompt if it trained with one)."""
    lines = ["# Written by medchat (python -m medchat.export format=gguf). Not medical advice: see SYSTEM.",
             f"# Chat format: {chat.name}; `ollama create NAME -f Modelfile` in this folder, then `ollama run NAME`.",
             f"FROM ./{gguf_file}",
             f"TEMPLATE {_quoted(go_template(chat))}",
             *[f"PARAMETER stop {json.dumps(s)}" for s in stops],
             f"SYSTEM {_quoted(system)}"]
    return "\n".join(lines) + "\n"


def system_prompt(trained: str | None) -> str:
    from medchat.inference import DISCLAIMER

    return f"{trained}\n\n{DISCLAIMER}" if trained else DISCLAIMER
