"""The offline model: a small Llama and a byte-level BPE tokenizer, both built by code.

Nothing is downloaded. The tokenizer is trained on the shipped sample (MedQuAD question/answer pairs), the weights are drawn
from a fixed seed, and the result is cached (keyed by the shape, the data and TINY_VERSION) so every run,
test and sweep job loads the same files with the ordinary `from_pretrained` path that Hub models take.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path

TINY_VERSION = 2  # 2: tokenizer trained on the MedQuAD sample (1: synthetic dialogues)
SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SAMPLE = "medchat:sample_data/medquad.jsonl"


def cache_root() -> Path:
    return Path(os.environ.get("MEDCHAT_CACHE", Path.home() / ".cache" / "medchat"))


def _spec(tiny_cfg) -> dict:
    if is_dataclass(tiny_cfg):
        return asdict(tiny_cfg)
    from omegaconf import OmegaConf

    return OmegaConf.to_container(tiny_cfg) if not isinstance(tiny_cfg, dict) else dict(tiny_cfg)


def _corpus() -> list[str]:
    from medchat.data.readers import resolve_path

    texts = []
    for line in resolve_path(SAMPLE).read_text().splitlines():
        row = json.loads(line)
        texts += [row["question"], row["answer"]]
    return texts


def build_tokenizer(vocab_size: int, out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from medchat.formatting import load_chat_template

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        unk_token=None,
        bos_token=None,
        chat_template=load_chat_template("chatml"),
        model_max_length=4096,
    )
    fast.save_pretrained(out_dir)
    return fast


def build_model(spec: dict, tokenizer, out_dir: Path):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec["seed"])
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out_dir)


def tiny_model_dir(tiny_cfg) -> Path:
    """Directory holding the tiny model and tokenizer, built on first use."""
    from medchat.data.readers import resolve_path

    spec = _spec(tiny_cfg)
    data_hash = hashlib.sha256(resolve_path(SAMPLE).read_bytes()).hexdigest()[:12]
    key = hashlib.sha256(json.dumps([spec, data_hash, TINY_VERSION], sort_keys=True).encode()).hexdigest()[:12]
    target = cache_root() / f"tiny-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time: the ranks of a multi-GPU launch all ask at once on a fresh machine (seen failing
    # on 2 GPUs without this lock); the others wait, then find the finished directory.
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        _lock(lock)
        if (target / "config.json").exists():
            return target
        _build(spec, data_hash, target)
    return target


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename below still protects readers
        return
    fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed


def _build(spec: dict, data_hash: str, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        tokenizer = build_tokenizer(spec["vocab_size"], tmp)
        build_model(spec, tokenizer, tmp)
        (tmp / "medchat_tiny.json").write_text(json.dumps({"spec": spec, "sample_sha": data_hash}))
        try:
            tmp.rename(target)  # atomic: parallel sweep jobs never see a half-written model
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
