"""Regional compilation: torch.compile each decoder layer, not the whole model.

Compiling the whole PEFT/bitsandbytes model breaks the graph at every 4-bit layer and recompiles per
shape; compiling one decoder layer compiles once (all layers share the code, parameters become inputs) and
cuts Python launch overhead inside each layer, which is where eager training of a 7B QLoRA model on an H200
spends 20-32% of the step waiting (bench/RESULTS.md). Packed rows change length every step, so shapes are
marked dynamic from the start instead of recompiling on the second shape, unless the plan fixed every
micro-batch's shape (trainer.fixed_shape, issue 23): then each layer compiles once for that one shape
(`dynamic=False`), the form Inductor lowers flex_attention in (torch 2.11 fails on it under dynamic shapes).

Inductor is asked to round fused intermediates to bf16 where eager does (`EAGER_ROUNDING`): without it the
compiled gradients missed the GPU equivalence floor. Fused LoRA with dropout draws each projection's mask seed
outside the compiled layers
(medchat.speed.fused_lora.seed_tensors): a seeded Generator inside would break the graph in every projection.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

# What medchat compiles with (speed.apply): Inductor keeps eager's bf16 rounding of each operator's output inside its
# fused kernels. With Inductor's own (fp32 kept between fused operators) the compiled path's worst adapter gradient
# missed the GPU equivalence floor (cosine 0.98578, the floor's limit 0.98757); with eager's roundings it passes
# (0.99215): bench/RESULTS.md, issue 23, call 13.
EAGER_ROUNDING = {"emulate_precision_casts": True}


def decoder_layers(model) -> torch.nn.ModuleList | None:
    """The ModuleList of decoder layers of a (PEFT-wrapped) causal LM: the longest ModuleList of blocks."""
    best = None
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0 and (best is None or len(module) > len(best)):
            if all(type(m) is type(module[0]) for m in module):
                best = module
    return best


def compile_layers(model, *, dynamic: bool | None = True, mode: str | None = None, backend="inductor",
                   options: dict | None = None, on_failure=None) -> int:
    """torch.compile every decoder layer's forward for training steps; returns how many layers.

    Only a training step (module in train mode, gradients on) runs the compiled forward: evaluation batches and
    generation (a KV cache that grows every token) have other shapes, and on a fixed-shape plan each new shape
    would be a recompilation (minutes on a 7B model, then Dynamo's limit and eager anyway). They run the eager
    forward, the same function uncompiled. Names, parameters and state_dict keys are untouched. `options`: Inductor
    settings (torch.compile's, exclusive with `mode`), e.g. {"emulate_precision_casts": True}: keep eager's bf16
    roundings between fused operators.

    on_failure(error): if given, a compiler failure (torch._dynamo's exceptions: Inductor failing to lower a layer)
    does not stop training: every layer goes back to its eager forward, the failing call runs
    again eager (whatever a partly compiled call computed is dropped: layers keep no state), and on_failure is
    told (to warn and record it). Only failures while a layer's forward is compiled are caught: the backward graph
    is compiled at the first backward, where a failure is raised, as are errors of the compiled step itself (out of
    memory, a kernel error), and a machine where Inductor cannot compile at all fails anyway where flex_attention
    compiles its kernels. Without on_failure, compiler failures are raised."""
    if mode is not None and options:
        raise ValueError("compile_layers: give `mode` or Inductor `options`, not both (torch.compile refuses both)")
    layers = decoder_layers(model)
    if layers is None:
        log.warning("compile: no decoder layers found; nothing compiled")
        return 0
    from medchat.speed.fused_lora import seed_tensors

    seed_tensors(model)  # before compiling: the compiled fused projections read their dropout seeds from these
    for layer in layers:
        if is_compiled(layer):
            continue
        eager = layer.forward
        compiled = torch.compile(eager, dynamic=dynamic, backend=backend,
                                 **({"options": dict(options)} if options else {"mode": mode}))

        def forward(*args, _layer=layer, _eager=eager, _compiled=compiled, **kwargs):
            if not (_layer.training and torch.is_grad_enabled()):
                return _eager(*args, **kwargs)
            try:
                return _compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as e:  # the compiler failed
                if on_failure is None:
                    raise
                uncompile_layers(model)
                on_failure(e)
                return _eager(*args, **kwargs)

        layer.forward = forward
        layer._medchat_eager_forward = eager
    log.info("compile: %d decoder layers of %s for training steps (dynamic=%s, mode=%s, options=%s)", len(layers),
             type(layers[0]).__name__, dynamic, mode, options)
    return len(layers)


def uncompile_layers(model) -> int:
    """Undo compile_layers: every decoder layer back to its eager forward."""
    count = 0
    for layer in decoder_layers(model) or []:
        if is_compiled(layer):
            layer.forward = layer._medchat_eager_forward
            del layer._medchat_eager_forward
            count += 1
    return count


def is_compiled(module) -> bool:
    return hasattr(module, "_medchat_eager_forward")
