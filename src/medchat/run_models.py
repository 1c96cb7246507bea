"""Models built from a finished run (opened by medchat.runs): its adapter checked against the base, then the base
with the adapter for generation (chat, the app, evaluate.py, make_pairs) or merged for export.

    run = open_run("runs/2026-11-22_10-00-00")            # medchat.runs
    model, tokenizer = load_for_generation(run)           # base (quantized as trained) + adapter, eval mode
    model, tokenizer = load_for_export(run, "auto")       # base in 16-bit with the adapter merged in

Whether the adapter belongs to the base about to be loaded is checked once, before any weights are read:
the base name the adapter recorded, and every adapter tensor's shape against the base architecture
instantiated on the meta device. Any mismatch is an AdapterMismatch naming both. Models built for
generation use the generation attention of a plan made for this machine (medchat.plan: never
flex_attention) and have the KV cache on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from omegaconf import OmegaConf

from medchat import hardware, modeling
from medchat import plan as run_plan
from medchat.config import ConfigError
from medchat.formatting import stop_token_ids
from medchat.runs import Run

TINY_DIR = re.compile(r"^tiny-[0-9a-f]{12}$")


class AdapterMismatch(ConfigError):
    """The adapter was trained on another base model than the one about to be loaded."""


# ----- adapter vs base ---------------------------------------------------------------------------------

def _identity(name_or_path: str) -> str:
    """A base's name for comparison; the offline tiny model is named by its cache key, not its cache folder."""
    path = Path(str(name_or_path).rstrip("/")).expanduser()
    if TINY_DIR.match(path.name):
        return path.name
    return str(path.resolve()) if path.exists() else str(name_or_path)


def check_adapter_base(adapter: Path, model_cfg, path: str, check_name: bool = True, where: str = "",
                       revision: str | None = "", tokens: int | None = None) -> None:
    """Raise AdapterMismatch unless the adapter was trained on this base (its recorded name, unless check_name
    is false) and fits it (every adapter tensor's shape, on the meta device; `tokens`, the run tokenizer's
    length, within the base's embeddings). `where` says where `path` came from, for the message."""
    adapter = Path(adapter)
    recorded = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if check_name and recorded and _identity(recorded) != _identity(path):
        raise AdapterMismatch(
            f"the adapter in {adapter} was trained on base model {recorded!r}, but the base to load is {path!r}"
            f"{f' (from {where})' if where else ''}. An adapter only works on the model it was trained on; if "
            f"{path!r} is that model stored elsewhere, say so (chat/app/export: base=PATH check_base=false; "
            "evaluate.py: base_model=PATH); otherwise use the base it was trained on")
    from safetensors import safe_open

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: the adapter is incomplete")
    meta = modeling.meta_model(model_cfg, modeling.model_config(model_cfg, path, revision))
    with safe_open(str(weights), framework="pt") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        try:
            if ".lora_A." in name or ".lora_B." in name:
                module = meta.get_submodule(re.split(r"\.lora_[AB]\.", name)[0])
                want = module.in_features if ".lora_A." in name else module.out_features
                got = shape[1] if ".lora_A." in name else shape[0]
            else:
                want, got = list(meta.get_parameter(name).shape), shape
        except AttributeError:
            raise AdapterMismatch(f"the adapter in {adapter} has weights for {name}, which base model {path!r} "
                                  "lacks: it was trained on another architecture") from None
        if want != got:
            raise AdapterMismatch(f"the adapter in {adapter} does not fit base model {path!r}: {key} has shape "
                                  f"{shape}, the base expects {want}. It was trained on another base model")
    vocab = meta.get_input_embeddings().num_embeddings
    if tokens is not None and tokens > vocab:
        raise AdapterMismatch(f"the adapter's tokenizer in {adapter} has {tokens} tokens but base model {path!r} "
                              f"embeds only {vocab}: this adapter was not trained on this base")


def base_path(run: Run, base: str | None = None) -> str:
    return base or modeling.model_path(run.cfg.model)


def check_base(run: Run, base: str | None = None, check_name: bool = True, tokenizer=None) -> str:
    """The base to load (base=, else the run's) after checking the run's adapter against it; returns its path."""
    path = base_path(run, base)
    where = "base=" if base else f"model.name_or_path in {run.config_file}"
    check_adapter_base(run.adapter, run.cfg.model, path, check_name=check_name, where=where,
                       revision=None if base else "", tokens=len(tokenizer) if tokenizer is not None else None)
    return path


# ----- models ------------------------------------------------------------------------------------------

def generation_plan(model_cfg, quant_cfg, path: str, hw=None) -> run_plan.ModelPlan:
    """How to load a model for generation on this machine (the run may have trained on another one)."""
    return run_plan.model_plan(model_cfg, quant_cfg, hw or hardware.detect(), path)


def load_base(plan: run_plan.ModelPlan, dequantize: bool = False):
    """The base for generation (generation attention, KV cache on, eval mode); `dequantize`: 4/8-bit weights
    become model-dtype weights of the same values (what merging needs)."""
    model = modeling.load_model(plan, generation=True)
    if dequantize and plan.quant.mode != "none":
        model = model.dequantize()
    return model.eval()


def add_adapter(base, adapter: Path, merge: bool = False, trainable: bool = False):
    """PeftModel of `base` with the adapter (checked beforehand by check_adapter_base); `merge` folds it in;
    `trainable`: left in train mode with the adapter's weights trainable (a DPO stage continuing an SFT run)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
    if trainable:
        return model
    if merge:
        model = model.merge_and_unload()
    return model.eval()


def run_tokenizer(run: Run):
    """The run's saved tokenizer (with the chat template it trained with)."""
    return modeling.load_tokenizer(run.cfg.model, path=str(run.adapter))


def set_stop_tokens(model, tokenizer) -> None:
    """The turn-ending token the adapter learned to emit stops generation, also in a saved generation_config."""
    gen = model.generation_config
    gen.eos_token_id = stop_token_ids(tokenizer, model)
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def load_for_generation(run: Run, quant: str | None = None, base: str | None = None, check_name: bool = True,
                        merge: bool = False, hw=None):
    """(base + the run's adapter, the run's tokenizer) for generation. quant: null = as trained."""
    tokenizer = run_tokenizer(run)
    path = check_base(run, base, check_name, tokenizer)
    quant_cfg = run.cfg.quant if quant is None else OmegaConf.merge(run.cfg.quant, {"mode": quant})
    plan = generation_plan(run.cfg.model, quant_cfg, path, hw)
    if base:
        plan = _without_revision(plan)
    model = add_adapter(load_base(plan, dequantize=merge), run.adapter, merge)
    set_stop_tokens(model, tokenizer)
    return model, tokenizer


def load_for_export(run: Run, dtype: str = "auto", base: str | None = None, check_name: bool = True, hw=None,
                    checked: bool = False):
    """(merged transformers model, the run's tokenizer): the base reloaded unquantized in `dtype` (auto: bf16
    where supported, else fp16), the adapter folded in. checked=True: the caller already ran check_base."""
    from medchat.config import QuantConfig

    hw = hw or hardware.detect()
    tokenizer = run_tokenizer(run)
    path = base_path(run, base) if checked else check_base(run, base, check_name, tokenizer)
    model_cfg = OmegaConf.merge(run.cfg.model, {"dtype": run_plan.export_dtype(dtype, hw)})
    plan = generation_plan(model_cfg, OmegaConf.structured(QuantConfig(mode="none")), path, hw)
    if base:
        plan = _without_revision(plan)
    merged = add_adapter(load_base(plan), run.adapter, merge=True)
    set_stop_tokens(merged, tokenizer)
    return merged, tokenizer


def _without_revision(plan: run_plan.ModelPlan) -> run_plan.ModelPlan:
    """A base given by path: the run's model.revision belongs to the Hub model it names, not to that path."""
    from dataclasses import replace

    return replace(plan, revision=None)
