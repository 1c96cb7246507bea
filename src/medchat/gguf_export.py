"""GGUF for llama.cpp and Ollama: the merged model with `gguf`'s tensor names, its tokenizer and chat template
in the file's metadata (the Ollama Modelfile beside it: medchat.modelfile).

    python -m medchat.export run_dir=RUN format=gguf                 # RUN/export/gguf/{model.gguf,Modelfile}
    python -m medchat.export run_dir=RUN format=gguf gguf.type=q8_0  # 8-bit blocks, about half the size
    cd RUN/export/gguf && ollama create medchat -f Modelfile && ollama run medchat

Everything that can refuse (the type, the architecture, the rope scaling, the tokenizer, the chat format) is
decided by `check` from the base's config.json and the run's tokenizer, before any weight is read; `write`
then takes the merged model. Supported: the Llama family (LlamaForCausalLM, SmolLM2, Llama-2/3), Mistral
(MistralForCausalLM, written as llama.cpp's `llama` architecture, as llama.cpp's own converter does) and
Qwen2. Llama-family q/k projections are permuted the way llama.cpp's converter does (its rope pairs
interleaved dimensions, transformers' the two halves); transformers' GGUF loader undoes it on reading.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from medchat.config import ConfigError
from medchat.modelfile import ChatFormat, adds_bos, check_chat

log = logging.getLogger(__name__)

TYPES = ("f16", "q8_0")
GGUF_FILE = "model.gguf"
# transformers architecture -> (llama.cpp architecture, q/k permuted for llama.cpp's rope)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}
Q8_BLOCK = 32  # q8_0 quantizes rows in blocks of 32 values; a row of another length stays f16


# ----- what the file will be, decided before any weight is read ----------------------------------------------

@dataclass
class Plan:
    """What `write` and the Modelfile (medchat.modelfile) need, all decided before any weight is read."""
    gguf_type: str
    arch: str  # llama.cpp's
    permute_qk: bool
    tokenizer_model: str  # gpt2 (byte-level BPE) | llama (sentencepiece-style BPE with byte fallback)
    pre: str | None  # llama.cpp's pre-tokenizer name (gpt2 model only)
    chat: ChatFormat | None
    add_bos: bool  # llama.cpp adds the bos token to a prompt (tokenizer.ggml.add_bos_token)
    template_differs: str | None = None  # why the Modelfile's template differs from the run's, if it does
    rope_factors: list[float] | None = None
    rope_linear: float | None = None
    warnings: list[str] = field(default_factory=list)


def check_type(gguf_type: str) -> None:
    if gguf_type not in TYPES:
        raise ConfigError(f"gguf.type={gguf_type!r} is not one of {', '.join(TYPES)}")


def check_architecture(config) -> tuple[str, bool]:
    names = list(getattr(config, "architectures", None) or [])
    found = [a for a in names if a in ARCHITECTURES]
    if not found:
        raise ConfigError(f"format=gguf: the base model's architecture {', '.join(names) or config.model_type!r} "
                          f"has no GGUF writer in medchat; supported: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[found[0]]


def _rope(config) -> tuple[list[float] | None, float | None]:
    """llama.cpp's rope for the config: (llama3 per-frequency factors, linear factor); other scalings refused."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    kind = rope.get("rope_type", rope.get("type", "default")) or "default"
    if kind == "default":
        return None, None
    if kind == "linear":
        return None, float(rope["factor"])
    if kind != "llama3":
        raise ConfigError(f"format=gguf: the base model's rope scaling {kind!r} is not written by medchat's GGUF "
                          "export (supported: none, linear, llama3)")
    # llama.cpp's convert_hf_to_gguf (LlamaModel.generate_extra_tensors): one factor per frequency
    base = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    dim = _head_dim(config)
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(float(factor))
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors, None


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _tokenizer_json(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError("format=gguf needs a fast (tokenizers) tokenizer; the run's tokenizer "
                          f"{type(tokenizer).__name__} has none")
    return json.loads(backend.to_str())


def _pre_name(pre: dict | None) -> str:
    """llama.cpp's name for the byte-level pre-tokenizer `pre` (tokenizer.json's), or a ConfigError."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import _LLAMA3_SPLIT, _QWEN2_SPLIT

    def byte_level(p, regex):
        return p.get("type") == "ByteLevel" and p.get("use_regex", True) == regex and not p.get("add_prefix_space")

    pre = pre or {}
    if byte_level(pre, True):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if len(steps) == 2 and steps[0].get("type") == "Split" and byte_level(steps[1], False):
        regex = steps[0].get("pattern", {}).get("Regex")
        known = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}
        if regex in known:
            return known[regex]
    if (len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits")
            and byte_level(steps[1], True)):
        return "smollm"
    raise ConfigError("format=gguf: the run's tokenizer splits text in a way medchat cannot name for llama.cpp "
                      f"(pre-tokenizer {json.dumps(pre)[:200]}); supported: GPT-2, Llama-3, Qwen2 and SmolLM "
                      "byte-level BPE, and sentencepiece-style BPE with byte fallback")


def check_tokenizer(tokenizer) -> tuple[str, str | None]:
    spec = _tokenizer_json(tokenizer)
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise ConfigError(f"format=gguf: the run's tokenizer is a {model.get('type')} model; medchat writes BPE "
                          "tokenizers only (byte-level, or sentencepiece-style with byte fallback)")
    if model.get("byte_fallback"):
        return "llama", None
    return "gpt2", _pre_name(spec.get("pre_tokenizer"))


def check(config, tokenizer, gguf_type: str, prompt_format: str = "chat_template", modelfile: bool = True) -> Plan:
    """Everything format=gguf can refuse, from the base's config and the run's tokenizer: no weights read."""
    check_type(gguf_type)
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("format=gguf needs the `gguf` package: pip install gguf (or pip install -e '.[real]')")
    arch, permute = check_architecture(config)
    factors, linear = _rope(config)
    tok_model, pre = check_tokenizer(tokenizer)
    chat, differs, add_bos = check_chat(tokenizer, prompt_format) if modelfile else (None, None, adds_bos(tokenizer))
    plan = Plan(gguf_type, arch, permute, tok_model, pre, chat, add_bos, differs, factors, linear)
    if differs:
        plan.warnings.append(f"the Modelfile's TEMPLATE is the standard {chat.name} format, which differs from the "
                             f"run's chat template: {differs}. Check it before serving (the GGUF's own metadata "
                             "holds the run's template unchanged)")
    if pre == "smollm":
        plan.warnings.append("SmolLM's pre-tokenizer splits digits one by one; llama.cpp does too, but "
                             "transformers' GGUF reader does not (its tokenizer from this file differs on numbers)")
    return plan


# ----- the file ----------------------------------------------------------------------------------------------

def permute(w, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's q/k order (convert_hf_to_gguf's LlamaModel.permute); transformers' reader reverses it."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tokens(tokenizer, n_vocab: int, tok_model: str):
    """(tokens, scores, token types) for ids 0..n_vocab-1; ids past the tokenizer are unused padding."""
    import gguf

    spec = _tokenizer_json(tokenizer)
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    vocab = spec["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    by_id.update({i: t["content"] for i, t in added.items()})
    if max(by_id) >= n_vocab:
        raise ConfigError(f"format=gguf: the tokenizer has ids up to {max(by_id)} but the model embeds {n_vocab}")
    rank = {}  # sentencepiece-style scores: a token made by an earlier merge scores higher (llama.cpp merges by score)
    if tok_model == "llama":
        for r, merge in enumerate(spec["model"].get("merges", [])):
            left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
            rank.setdefault(left + right, r)
    tokens, scores, types = [], [], []
    for i in range(n_vocab):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            scores.append(-10000.0)
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(text)
        scores.append(-float(rank.get(text, 0)) if tok_model == "llama" else 0.0)
        if i == tokenizer.unk_token_id or text == spec["model"].get("unk_token"):
            types.append(gguf.TokenType.UNKNOWN)
        elif i in added:
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        elif tok_model == "llama" and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, scores, types


def _merges(tokenizer) -> list[str]:
    merges = _tokenizer_json(tokenizer)["model"].get("merges", [])
    out = []
    for m in merges:
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        if " " in left or " " in right:
            raise ConfigError("format=gguf: the tokenizer has a merge with a space in it, which GGUF's "
                              "space-separated merges cannot hold")
        out.append(f"{left} {right}")
    return out


def _adds_space_prefix(tokenizer) -> bool:
    spec = _tokenizer_json(tokenizer)
    text = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
    return '"Prepend"' in text or ('"Metaspace"' in text and '"prepend_scheme": "never"' not in text)


def _add_tokenizer(writer, tokenizer, plan: Plan, n_vocab: int) -> None:
    tokens, scores, types = _tokens(tokenizer, n_vocab, plan.tokenizer_model)
    writer.add_tokenizer_model(plan.tokenizer_model)
    if plan.pre:
        writer.add_tokenizer_pre(plan.pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if plan.tokenizer_model == "llama":
        writer.add_token_scores(scores)
        writer.add_add_space_prefix(_adds_space_prefix(tokenizer))
    writer.add_token_merges(_merges(tokenizer))
    for kind in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(plan.add_bos)
    writer.add_add_eos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _add_hparams(writer, config, plan: Plan, n_vocab: int) -> None:
    rope = dict(getattr(config, "rope_parameters", None) or {})
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    head_dim = _head_dim(config)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if plan.rope_linear:
        import gguf

        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(plan.rope_linear)
    writer.add_vocab_size(n_vocab)


def _tensor_arrays(model, plan: Plan):
    """(gguf name, numpy array, raw ggml type or None) for every weight of the merged model."""
    import gguf
    import numpy as np
    import torch

    config = model.config
    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[plan.arch]
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd, and transformers' reader ties them when output.weight is absent
        base, _, suffix = hf_name.rpartition(".")
        name = names.get_name(base)
        if name is None:
            raise ConfigError(f"format=gguf: the merged model has a weight {hf_name} that gguf's {plan.arch} "
                              "tensor names do not cover")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if plan.permute_qk and name.endswith(".attn_q"):
            data = permute(data, n_head, n_head)
        elif plan.permute_qk and name.endswith(".attn_k"):
            data = permute(data, n_head, n_kv)
        name = f"{name}.{suffix}"
        if data.ndim == 1:
            yield name, data, None  # norms and biases stay f32, as llama.cpp's converter keeps them
        elif plan.gguf_type == "q8_0" and data.shape[-1] % Q8_BLOCK == 0:
            yield name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
        else:
            yield name, data.astype(np.float16), None
    if plan.rope_factors is not None:
        yield "rope_freqs.weight", np.asarray(plan.rope_factors, dtype=np.float32), None


def write(model, tokenizer, path: Path, plan: Plan, name: str = "medchat") -> Path:
    """The GGUF of `model` (a merged transformers model) and `tokenizer` at `path`."""
    import gguf

    config = model.config
    n_vocab = model.get_input_embeddings().num_embeddings
    writer = gguf.GGUFWriter(str(path), plan.arch)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if plan.gguf_type == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_hparams(writer, config, plan, n_vocab)
    _add_tokenizer(writer, tokenizer, plan, n_vocab)
    for tensor_name, data, raw in _tensor_arrays(model, plan):
        writer.add_tensor(tensor_name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
