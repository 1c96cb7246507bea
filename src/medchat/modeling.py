"""Tokenizer, quantization, base model placement and LoRA: one builder each.

Hardware-dependent choices (dtype, precision, placement) are made here from the config's `auto`
values, and everything that can be checked before weights are loaded is: LoRA target modules are
resolved against the architecture instantiated on the meta device, quantization against the machine.
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

from medchat.config import ConfigError
from medchat.formatting import load_chat_template

log = logging.getLogger(__name__)

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
# Pad tokens that already exist in common vocabularies, tried before adding a new one.
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<|reserved_special_token_0|>")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


# ----- where and in what precision ---------------------------------------------------------------------

def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def has_cuda() -> bool:
    return torch.cuda.is_available()


def bf16_supported() -> bool:
    return has_cuda() and torch.cuda.is_bf16_supported()


def model_dtype(model_cfg) -> torch.dtype:
    if model_cfg.dtype != "auto":
        return DTYPES[model_cfg.dtype]
    if not has_cuda():
        return torch.float32
    return torch.bfloat16 if bf16_supported() else torch.float16


def precision_flags(precision: str) -> dict:
    """trainer.precision -> SFTConfig's bf16/fp16 flags, refusing what the machine cannot do."""
    if precision == "auto":
        precision = "fp32" if not has_cuda() else ("bf16" if bf16_supported() else "fp16")
    if precision in ("bf16", "fp16") and not has_cuda():
        raise ConfigError(f"trainer.precision={precision} needs a CUDA GPU; on CPU use trainer.precision=fp32 or auto")
    if precision == "bf16" and not bf16_supported():
        raise ConfigError("trainer.precision=bf16: this GPU has no bf16 support; use fp16 or auto")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def device_map():
    """Each process holds a whole copy on its own GPU: what DDP needs for 4-bit models. Under FSDP the model
    is loaded unplaced and FSDP shards it across the ranks."""
    from medchat.perf import fsdp_enabled

    return {"": local_rank()} if has_cuda() and not fsdp_enabled() else None


# ----- tokenizer ---------------------------------------------------------------------------------------

def model_path(model_cfg) -> str:
    if model_cfg.name_or_path == "tiny":
        from medchat.tiny import tiny_model_dir

        return str(tiny_model_dir(model_cfg.tiny))
    from medchat.pretrained import is_packaged, packaged_model_dir

    if is_packaged(model_cfg.name_or_path):  # e.g. packaged:smollm2-135m-instruct (medchat.pretrained)
        return str(packaged_model_dir(model_cfg.name_or_path))
    return model_cfg.name_or_path


def ensure_pad_token(tokenizer) -> None:
    """pad must differ from eos, or masking padding would also mask the EOS the model must learn."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    candidates = [tokenizer.unk_token] if tokenizer.unk_token else []
    for token in candidates + list(PAD_CANDIDATES):
        if token in vocab and vocab[token] != tokenizer.eos_token_id:
            tokenizer.pad_token = token
            log.info("pad token set to %r (was %r)", token, tokenizer.eos_token)
            return
    raise ConfigError(
        f"tokenizer has no pad token distinct from eos {tokenizer.eos_token!r} and none of {PAD_CANDIDATES} exists; "
        "add one to the tokenizer (and resize embeddings) before training"
    )


def load_tokenizer(model_cfg, path: str | None = None):
    from transformers import AutoTokenizer

    source = path or model_cfg.tokenizer or model_path(model_cfg)
    tokenizer = AutoTokenizer.from_pretrained(
        source, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
    )
    template = load_chat_template(model_cfg.chat_template)
    if template is not None:
        tokenizer.chat_template = template
    ensure_pad_token(tokenizer)
    tokenizer.padding_side = "right"
    return tokenizer


# ----- quantization -----------------------------------------------------------------------------------

def check_quantization(quant_cfg, model_cfg=None) -> None:
    if quant_cfg.mode == "none":
        return
    if model_cfg is not None:
        from medchat.perf import check_fsdp_quantization

        check_fsdp_quantization(quant_cfg, model_dtype(model_cfg))
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"quant.mode={quant_cfg.mode} needs bitsandbytes, which is not installed; use quant=none")
    if torch.backends.mps.is_available() and not has_cuda():
        raise ConfigError(f"quant.mode={quant_cfg.mode}: bitsandbytes does not run on Apple MPS; use quant=none")
    if quant_cfg.compute_dtype == "bfloat16" and has_cuda() and not bf16_supported():
        raise ConfigError("quant.compute_dtype=bfloat16: this GPU has no bf16 support; use auto or float16")


def quantization_config(quant_cfg, model_cfg):
    """quant config -> transformers.BitsAndBytesConfig (None for quant.mode=none)."""
    from transformers import BitsAndBytesConfig

    from medchat.perf import check_fsdp_quantization, fsdp_enabled

    if quant_cfg.mode == "none":
        return None
    check_fsdp_quantization(quant_cfg, model_dtype(model_cfg))
    if quant_cfg.mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = DTYPES.get(quant_cfg.compute_dtype) or model_dtype(model_cfg)
    kwargs = {}
    if quant_cfg.quant_storage:
        kwargs["bnb_4bit_quant_storage"] = getattr(torch, quant_cfg.quant_storage)
    elif fsdp_enabled():
        kwargs["bnb_4bit_quant_storage"] = model_dtype(model_cfg)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_cfg.mode,
        bnb_4bit_use_double_quant=quant_cfg.double_quant,
        bnb_4bit_compute_dtype=compute,
        **kwargs,
    )


# ----- base model and LoRA ----------------------------------------------------------------------------

def linear_module_names(model) -> set[str]:
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(name.rsplit(".", 1)[-1])
    return names


def resolve_target_modules(lora_cfg, available: set[str]) -> list[str]:
    if lora_cfg.target_modules:
        wanted = list(lora_cfg.target_modules)
    elif lora_cfg.targets == "qv":
        wanted = ["q_proj", "v_proj"]
    elif lora_cfg.targets == "attention":
        wanted = list(ATTENTION)
    else:
        wanted = sorted(available - {"lm_head"})
    if "lm_head" in wanted:
        raise ConfigError(
            "lora.target_modules: TRL computes the loss from lm_head.weight directly, so a LoRA adapter on lm_head "
            "would never be trained. Use lora.targets=all_linear_lm_head, which trains lm_head in full instead"
        )
    missing = [m for m in wanted if m not in available]
    if missing:
        key = "lora.target_modules" if lora_cfg.target_modules else f"lora.targets={lora_cfg.targets}"
        raise ConfigError(
            f"{key}: the model has no module named {', '.join(missing)}; its linear modules are "
            f"{', '.join(sorted(available))}"
        )
    return wanted


def architecture_linear_names(model_cfg, path: str) -> set[str]:
    """Linear module names of the architecture, from its config alone (meta device: no weights read)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=model_cfg.trust_remote_code)
    return linear_module_names(model)


def supports_flex_attention(model_cfg, path: str) -> bool:
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code)
        return bool(getattr(AutoModelForCausalLM._model_mapping[type(config)], "_supports_flex_attn", False))
    except Exception:  # remote code or an unmapped architecture: stay with sdpa
        return False


def attn_implementation(model_cfg, path: str | None = None, training: bool = True) -> str:
    """model.attn_implementation; `auto` picks the kernel (medchat.perf.choose_attention). Generation
    (training=False) never gets flex_attention, which recompiles as the KV cache grows."""
    from medchat.perf import choose_attention

    cuda = has_cuda()
    flex_ok = (training and cuda and model_cfg.attn_implementation == "auto" and path is not None
               and supports_flex_attention(model_cfg, path))
    return choose_attention(model_cfg.attn_implementation, cuda=cuda,
                            half_precision=model_dtype(model_cfg) != torch.float32, supports_flex=flex_ok)


def load_model(model_cfg, quant_cfg, path: str, training: bool = True):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=model_cfg.revision,
        trust_remote_code=model_cfg.trust_remote_code,
        dtype=model_dtype(model_cfg),
        attn_implementation=attn_implementation(model_cfg, path, training),
        quantization_config=quantization_config(quant_cfg, model_cfg),
        device_map=device_map(),
    )
    # Needed with checkpointing, and so that padding-free packed rows get per-document attention
    # from position_ids with sdpa/eager.
    model.config.use_cache = False
    if quant_cfg.mode in ("nf4", "fp4") and not has_cuda():
        disable_cpu_weight_packing(model)
    return model


def disable_cpu_weight_packing(model) -> None:
    """bitsandbytes (0.50) repacks 4-bit weights for a faster CPU kernel on the first no-grad eval forward,
    and that kernel has no autograd: every later training step then sends no gradient through the base
    layers, so only the last layers' LoRA weights learn (measured: 8 of 24 LoRA tensors got gradients).
    Training evaluates before and during the run, so the repacking is switched off."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def lora_config(lora_cfg, target_modules: list[str]):
    """lora config -> peft.LoraConfig (plain Python values only).

    `all_linear_lm_head` (the notebooks' "all linear layers plus lm_head") trains lm_head in full through
    `modules_to_save`: TRL takes the loss from lm_head.weight directly and refuses a LoRA adapter there.
    """
    from peft import LoraConfig

    return LoraConfig(
        modules_to_save=["lm_head"] if lora_cfg.targets == "all_linear_lm_head" else None,
        task_type="CAUSAL_LM",
        r=int(lora_cfg.r),
        lora_alpha=int(lora_cfg.lora_alpha),
        lora_dropout=float(lora_cfg.lora_dropout),
        target_modules=list(target_modules),
        bias=str(lora_cfg.bias),
        use_rslora=bool(lora_cfg.use_rslora),
    )


def apply_lora(model, peft_config):
    from peft import get_peft_model

    model = get_peft_model(model, peft_config)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %s trainable of %s parameters (%.3f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model
