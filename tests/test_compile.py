"""Compiled decoder layers (issue 23) compute what the eager layers compute, without graph breaks.

On CPU the compiler's front end (Dynamo + AOTAutograd, backend `aot_eager`) is what can be checked: that every
decoder layer, with PEFT LoRA fused (medchat.speed.fused_lora) over a 4-bit bitsandbytes base and dropout on,
traces into one graph (no break per projection, no recompilation per layer or per step on a fixed shape), and
that the traced forward and backward equal the eager ones with the same dropout masks. Inductor's generated
kernels and flex_attention are GPU matters: bench/equivalence.py's record (bench/RESULTS.md, issue 23).
"""

from __future__ import annotations

import copy

import pytest
import torch

from medchat.speed.compile import compile_layers, decoder_layers
from medchat.speed.fused_lora import fuse_lora, seed_tensors

TOKENS = 96


def lora_model(tiny_dir, quant: bool, dropout: float):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kw = {"dtype": torch.float32, "attn_implementation": "sdpa"}
    if quant:
        pytest.importorskip("bitsandbytes")
        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True,
                                                       bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, **kw)
    model.config.use_cache = False
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # B starts at zero in PEFT: make every adapter act
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    model.train()
    return model


def packed_batch(vocab: int):
    """One fixed-shape micro-batch: three documents flattened into one row (positions restart per document)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (1, TOKENS), generator=g)
    pos = torch.cat([torch.arange(40), torch.arange(30), torch.arange(26)])[None]
    return {"input_ids": ids, "position_ids": pos, "labels": ids.clone()}


def step(model, batch, seed: int):
    """Forward + backward with the CPU generator (the dropout seeds' source) at `seed`; loss and LoRA grads."""
    model.zero_grad()
    torch.manual_seed(seed)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("quant", [False, True], ids=["fp32", "nf4"])
def test_compiled_layers_equal_eager_with_dropout_and_trace_whole(tiny_dir, quant):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = lora_model(tiny_dir, quant, dropout=0.1)
    assert fuse_lora(eager) == 7 * len(decoder_layers(eager))
    compiled = copy.deepcopy(eager)
    seed_tensors(eager)  # the same seed source for both: each forward draws the masks' seeds up front
    assert compile_layers(compiled, dynamic=False, backend="aot_eager") == len(decoder_layers(compiled))
    batch = packed_batch(eager.config.vocab_size)

    results = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        results[name] = [step(model, batch, seed) for seed in (10, 11, 10)]
    for (loss_e, grads_e), (loss_c, grads_c) in zip(results["eager"], results["compiled"]):
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
        for n in grads_e:
            torch.testing.assert_close(grads_c[n], grads_e[n], rtol=1e-4, atol=1e-6, msg=n)
    # dropout really acts and is redrawn per forward: seeds 10 and 11 differ, 10 twice is the same
    (l10, _), (l11, _), (l10b, _) = results["compiled"]
    assert l10 != l11 and l10 == l10b

    assert dict(counters["graph_break"]) == {}, dict(counters["graph_break"])
    # one graph for layer 0 (its input needs no grad: the embedding is frozen) and one shared by all others;
    # three steps of one shape compile nothing more
    assert counters["stats"]["unique_graphs"] <= 2, dict(counters["stats"])



def test_a_compiler_failure_falls_back_to_the_eager_layers_when_asked(tiny_dir):
    """With on_failure (what trainer.compile gets: medchat.speed.apply), a compiler that fails leaves training on
    the eager layers: the step's loss and gradients are the eager model's, every layer is uncompiled, and
    on_failure hears the error once. Without it the failure is raised."""
    from medchat.speed.compile import is_compiled

    def failing(gm, example_inputs):  # a backend that cannot compile (Inductor failing to lower, no toolchain)
        raise RuntimeError("no kernels for this layer")

    torch._dynamo.reset()
    eager = lora_model(tiny_dir, False, dropout=0.0)
    model = copy.deepcopy(eager)
    heard = []
    compile_layers(model, dynamic=False, backend=failing, on_failure=heard.append)
    batch = packed_batch(model.config.vocab_size)
    (loss, grads), (loss_e, grads_e) = step(model, batch, 0), step(eager, batch, 0)
    torch.testing.assert_close(loss, loss_e, rtol=0, atol=0)
    for n in grads_e:
        torch.testing.assert_close(grads[n], grads_e[n], rtol=0, atol=0, msg=n)
    assert len(heard) == 1 and "no kernels for this layer" in str(heard[0])
    assert not any(is_compiled(layer) for layer in decoder_layers(model))
    step(model, batch, 1)  # the next steps run eager without asking the compiler again
    assert len(heard) == 1
    torch._dynamo.reset()
    strict = copy.deepcopy(eager)
    compile_layers(strict, dynamic=False, backend=failing)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="no kernels"):
        step(strict, batch, 0)


def test_the_run_records_a_compiler_failure_and_trains_on(tiny_dir, monkeypatch, caplog):
    """speed.apply (what build_trainer calls for trainer.compile) gives compile_layers its fallback: after a
    compiler failure metrics.json's speed section says 0 compiled layers and why, and the log warns."""
    import types

    from medchat.speed.apply import apply

    def failing(gm, example_inputs):
        raise RuntimeError("no kernels for this layer")

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend=failing))  # Inductor failing
    torch._dynamo.reset()
    model = lora_model(tiny_dir, False, dropout=0.0)
    plan = types.SimpleNamespace(fused_lora=False, compile=True, fixed_shape_tokens=TOKENS)
    done = apply(types.SimpleNamespace(model=model), plan)
    assert done["compiled_layers"] == len(decoder_layers(model))
    with caplog.at_level("WARNING", logger="medchat.speed.apply"):
        step(model, packed_batch(model.config.vocab_size), 0)
    assert done["compiled_layers"] == 0 and "no kernels for this layer" in done["compile_failed"]
    assert "training goes on eager" in caplog.text


def test_only_training_steps_run_compiled(tiny_dir):
    """Evaluation and generation shapes differ from the one fixed training shape: they run the eager forward (no
    recompilation per eval batch or per generated token), training steps the compiled one."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = lora_model(tiny_dir, False, dropout=0.0)
    compile_layers(model, dynamic=False, backend="aot_eager")
    batch = packed_batch(model.config.vocab_size)
    model.eval()
    with torch.no_grad():
        model(**batch)
        model.generate(input_ids=batch["input_ids"][:, :8], max_new_tokens=3, do_sample=False)
    assert counters["stats"].get("unique_graphs", 0) == 0  # nothing compiled for eval or generation
    model.train()
    step(model, batch, 0)
    assert counters["stats"]["unique_graphs"] >= 1


def test_compiled_nf4_layers_keep_no_dequantized_weight_for_backward(tiny_dir):
    """Forward's and backward's dequantize of a 4-bit weight must stay two calls in the compiled graph: merged,
    the partitioner keeps every projection's full-precision weight from forward to backward (+21 GiB measured on
    the 7B shape). The tensors the compiled layers save hold no [out, in] weight in a float dtype."""
    torch._dynamo.reset()
    model = lora_model(tiny_dir, True, dropout=0.0)
    fuse_lora(model)
    compile_layers(model, dynamic=False, backend="aot_eager")
    weights = {tuple(m.weight.quant_state.shape) for m in model.modules()
               if getattr(getattr(m, "weight", None), "quant_state", None) is not None}
    assert weights
    saved = []

    def keep(t):
        saved.append((tuple(t.shape), t.dtype))
        return t

    batch = packed_batch(model.config.vocab_size)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        loss = model(**batch).loss
    loss.backward()
    dequantized = [s for s in saved if s[0] in weights and s[1].is_floating_point]
    assert saved and not dequantized, dequantized[:3]


def test_compiled_layers_with_checkpointing_recompute_the_same_masks(tiny_dir):
    """Gradient checkpointing re-runs each compiled layer's forward in backward: it must read the same dropout seeds
    (drawn once per model forward) and so rebuild the same masks. Compiled + checkpointed equals eager + checkpointed,
    and eager without checkpointing (the same masks whether recomputed or kept)."""
    torch._dynamo.reset()
    eager = lora_model(tiny_dir, False, dropout=0.1)
    fuse_lora(eager)
    plain = copy.deepcopy(eager)
    compiled = copy.deepcopy(eager)
    for model in (eager, compiled):
        model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    seed_tensors(eager)
    seed_tensors(plain)
    compile_layers(compiled, dynamic=False, backend="aot_eager")
    batch = packed_batch(eager.config.vocab_size)
    results = {name: [step(m, batch, seed) for seed in (3, 4)]
               for name, m in (("plain", plain), ("eager", eager), ("compiled", compiled))}
    for name in ("eager", "compiled"):
        for (loss_r, grads_r), (loss, grads) in zip(results["plain"], results[name]):
            torch.testing.assert_close(loss, loss_r, rtol=1e-5, atol=1e-6)
            for n in grads_r:
                torch.testing.assert_close(grads[n], grads_r[n], rtol=1e-4, atol=1e-6, msg=f"{name} {n}")


def test_inductor_options_reach_torch_compile_and_exclude_mode(tiny_dir, monkeypatch):
    """compile_layers hands Inductor options (medchat's EAGER_ROUNDING) to torch.compile as given, refuses them
    together with a mode (as torch.compile would) before any layer is touched, and the layers Inductor compiles
    with them (on CPU: its C++ backend) compute the eager loss and gradients (fp32: nothing to round)."""
    from medchat.speed.compile import EAGER_ROUNDING

    model = lora_model(tiny_dir, False, dropout=0.0)
    batch = packed_batch(model.config.vocab_size)
    eager_loss, eager_grads = step(model, batch, 0)
    seen = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw) or real(fn, **kw))
    with pytest.raises(ValueError, match="mode"):
        compile_layers(model, dynamic=False, mode="reduce-overhead", options=EAGER_ROUNDING)
    assert seen == [] and not hasattr(decoder_layers(model)[0], "_medchat_eager_forward")
    torch._dynamo.reset()
    compile_layers(model, dynamic=False, options=EAGER_ROUNDING)
    assert len(seen) == len(decoder_layers(model))
    assert all(kw.get("options") == EAGER_ROUNDING and "mode" not in kw for kw in seen)
    loss, grads = step(model, batch, 0)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    for name in grads:
        torch.testing.assert_close(grads[name], eager_grads[name], rtol=1e-4, atol=1e-5, msg=name)
