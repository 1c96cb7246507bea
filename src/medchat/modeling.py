"""Builders: the tokenizer, the base model (as a medchat.plan.ModelPlan says), LoRA; and what the
architecture offers, read from its config alone (linear module names on the meta device, flex support).

Nothing here decides a hardware-dependent or `auto` value: medchat.plan does, once, and the builders take
its plan.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch

from medchat.config import ConfigError
from medchat.formatting import load_chat_template

log = logging.getLogger(__name__)

# lora.targets presets; all_linear / all_linear_lm_head take every linear module the architecture has.
LORA_PRESETS = {"qv": ("q_proj", "v_proj"), "attention": ("q_proj", "k_proj", "v_proj", "o_proj")}
# Pad tokens that already exist in common vocabularies, tried before adding a new one.
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]", "<|reserved_special_token_0|>")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


# ----- tokenizer ---------------------------------------------------------------------------------------

def model_path(model_cfg) -> str:
    from medchat.pretrained import is_packaged, packaged_model_dir

    if is_packaged(model_cfg.name_or_path):  # e.g. packaged:smollm2-135m-instruct (medchat.pretrained)
        return str(packaged_model_dir(model_cfg.name_or_path))
    if model_cfg.name_or_path == "tiny":
        from medchat.tiny import tiny_model_dir

        return str(tiny_model_dir(model_cfg.tiny))
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

def quantization_config(quant):
    """medchat.plan.QuantPlan -> transformers.BitsAndBytesConfig (None for quant.mode=none)."""
    from transformers import BitsAndBytesConfig

    if quant.mode == "none":
        return None
    if quant.mode == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    kwargs = {"bnb_4bit_quant_storage": DTYPES[quant.storage]} if quant.storage else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.mode,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=DTYPES[quant.compute_dtype],
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
    elif lora_cfg.targets in LORA_PRESETS:
        wanted = list(LORA_PRESETS[lora_cfg.targets])
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


def model_config(model_cfg, path: str, revision: str | None = ""):
    """The architecture's transformers config (config.json only). revision "": the model config's own."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, revision=model_cfg.revision if revision == "" else revision,
                                      trust_remote_code=model_cfg.trust_remote_code)


def meta_model(model_cfg, config):
    """The architecture instantiated on the meta device: module names and shapes, no memory, no weights read."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config, trust_remote_code=model_cfg.trust_remote_code)


def architecture_linear_names(model_cfg, config) -> set[str]:
    """Linear module names of the architecture, from its config alone."""
    return linear_module_names(meta_model(model_cfg, config))


def supports_flex_attention(config) -> bool:
    from transformers import AutoModelForCausalLM

    try:
        return bool(getattr(AutoModelForCausalLM._model_mapping[type(config)], "_supports_flex_attn", False))
    except Exception:  # remote code, an unmapped architecture or no config: stay with sdpa
        return False


def load_model(plan, generation: bool = False):
    """The base model as `plan` (a medchat.plan.ModelPlan) says; `generation`: with the generation attention
    and the KV cache on, else the training attention and no cache."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        plan.path,
        revision=plan.revision,
        trust_remote_code=plan.trust_remote_code,
        dtype=DTYPES[plan.dtype],
        attn_implementation=plan.generation_attention if generation else plan.train_attention,
        quantization_config=quantization_config(plan.quant),
        device_map={"": plan.device} if plan.device is not None else None,
    )
    # Training: needed with checkpointing, and so that padding-free packed rows get per-document attention
    # from position_ids with sdpa/eager. Generation wants the cache.
    model.config.use_cache = generation
    if plan.quant.mode in ("nf4", "fp4") and not plan.cuda:
        disable_cpu_weight_packing(model)
    return model.eval() if generation else model


@contextmanager
def attention_for_generation(model, attention: str):
    """Generate with `attention` from a model built for training (the eval.every_steps callback), then switch
    back: flex_attention recompiles at every new KV-cache length."""
    current = getattr(model.config, "_attn_implementation", attention)
    if current == attention:
        yield model
        return
    model.set_attn_implementation(attention)
    try:
        yield model
    finally:
        model.set_attn_implementation(current)


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
