"""Regional compilation: torch.compile each decoder layer, not the whole model.

Compiling the whole PEFT/bitsandbytes model breaks the graph at every 4-bit layer and recompiles per
shape; compiling one decoder layer compiles once (all layers share the code, parameters become inputs) and
cuts Python launch overhead inside each layer, which is where eager training of a 7B QLoRA model on an H200
spends 20-32% of the step waiting (bench/RESULTS.md). Packed rows change length every step, so shapes are
marked dynamic from the start instead of recompiling on the second shape.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def decoder_layers(model) -> torch.nn.ModuleList | None:
    """The ModuleList of decoder layers of a (PEFT-wrapped) causal LM: the longest ModuleList of blocks."""
    best = None
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0 and (best is None or len(module) > len(best)):
            if all(type(m) is type(module[0]) for m in module):
                best = module
    return best


def compile_layers(model, *, dynamic: bool | None = True, mode: str | None = None) -> int:
    """torch.compile every decoder layer in place (nn.Module.compile keeps names and state_dict keys)."""
    layers = decoder_layers(model)
    if layers is None:
        log.warning("compile: no decoder layers found; nothing compiled")
        return 0
    for layer in layers:
        layer.compile(dynamic=dynamic, mode=mode)
    log.info("compile: %d decoder layers of %s (dynamic=%s, mode=%s)", len(layers), type(layers[0]).__name__,
             dynamic, mode)
    return len(layers)


def is_compiled(module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None
