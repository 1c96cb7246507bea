"""What an evaluation loads, and the checks made before any weights are read.

A run's base model comes from the config the run recorded (`RUN/.hydra/config.yaml` when train.py made
it, else `RUN/config.yaml`); its adapter from `RUN/adapter`. The adapter must belong to that base: the
name recorded in `adapter_config.json` must match, and every adapter tensor must fit the base's
architecture (checked on the meta device). With `merge=true` the adapter is folded into the base after
its quantized weights are dequantized to the model dtype: the same function the run trained, without
the 4-bit kernels' per-token cost at generation time.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from omegaconf import OmegaConf

from medchat import modeling, rundir
from medchat.config import Config, ConfigError

log = logging.getLogger(__name__)
TINY_DIR = re.compile(r"^tiny-[0-9a-f]{12}$")


def read_run_config(run_dir: str | Path):
    run_dir = Path(run_dir)
    for path in (run_dir / ".hydra" / "config.yaml", run_dir / "config.yaml"):
        if path.is_file():
            return OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path))
    raise ConfigError(f"{run_dir} has no .hydra/config.yaml or config.yaml: cannot tell which base model it trained")


def adapter_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        status = rundir.read_status(run_dir)
        state = f" (run status: {status['state']}{': ' + status['reason'] if status.get('reason') else ''})" \
            if status else ""
        raise FileNotFoundError(f"{run_dir} has no adapter: {adapter}/adapter_config.json is missing{state}. "
                                "Evaluate a finished run, or a base model with model=<preset>")
    return adapter


def _identity(name_or_path: str) -> str:
    """A base's name for comparison; the offline tiny model is named by its cache key, not its cache folder."""
    path = Path(str(name_or_path).rstrip("/"))
    return path.name if TINY_DIR.match(path.name) else str(path)


def check_adapter_base(adapter: Path, model_cfg, path: str, check_name: bool = True) -> None:
    """Raise ConfigError unless the adapter was trained on this base (name) and fits it (every tensor's shape)."""
    recorded = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if check_name and recorded and _identity(recorded) != _identity(path):
        raise ConfigError(
            f"the adapter in {adapter} was trained on base model {recorded!r}, but this evaluation would load "
            f"{path!r}. If that is the same model stored elsewhere, pass base_model={path}; otherwise evaluate "
            "the adapter with the base it was trained on"
        )
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: the adapter is incomplete")
    config = AutoConfig.from_pretrained(path, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code)
    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(config, trust_remote_code=model_cfg.trust_remote_code)
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
            raise ConfigError(f"the adapter in {adapter} has weights for {name}, which base model {path!r} lacks: "
                              "it was trained on another architecture") from None
        if want != got:
            raise ConfigError(f"the adapter in {adapter} does not fit base model {path!r}: {key} has shape {shape}, "
                              f"the base expects {want}. It was trained on another base model")


def load_base(model_cfg, quant_cfg, path: str, dequantize: bool):
    """The base model, in eval mode; `dequantize`: 4/8-bit weights become model-dtype weights of the same values."""
    model = modeling.load_model(model_cfg, quant_cfg, path)
    if dequantize and quant_cfg.mode != "none":
        model = model.dequantize()
    model.config.use_cache = True
    return model.eval()


def add_adapter(base, adapter: Path, merge: bool):
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(adapter))
    if merge:
        model = model.merge_and_unload()
    return model.eval()


def models(plan, merge: bool, compare_base: bool):
    """Yield (label, model): "base" first when asked for (or alone for a preset), then "adapter" (the run's
    adapter, or the exported folder of `artifact=`)."""
    if plan.merged is not None:  # an exported merged model: what ships, its saved 16-bit weights unquantized
        if compare_base:
            yield "base", load_base(plan.model_cfg, plan.quant_cfg, plan.model_path, dequantize=merge)
        from omegaconf import OmegaConf

        from medchat.config import QuantConfig

        yield "adapter", load_base(plan.model_cfg, OmegaConf.structured(QuantConfig(mode="none")), str(plan.merged),
                                   dequantize=False)
        return
    base = load_base(plan.model_cfg, plan.quant_cfg, plan.model_path, dequantize=merge)
    if plan.adapter is None:
        yield "base", base
        return
    if compare_base:
        yield "base", base
    log.info("adding the adapter %s (%s)", plan.adapter, "merged" if merge else "unmerged")
    yield "adapter", add_adapter(base, plan.adapter, merge)
