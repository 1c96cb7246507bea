"""medchat.speed: fused LoRA equals PEFT's forward and gradients; the micro-batch plan; compile equals eager."""

from __future__ import annotations


import pytest
import torch

from medchat.speed.fused_lora import FUSED_FLAG, LoRAFunction, _keep, fuse_lora, unfuse_lora
from medchat.speed.microbatch import checkpoint_counts, choose_micro_batch

GIB = 2**30


def lora_mlp(quant: bool | str, dropout: float, seed: int = 0, bias: str = "none"):
    """A two-projection PEFT model: plain nn.Linear, or bitsandbytes 4-bit (quant=True) or int8 (quant="int8")
    base layers (CPU kernels)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.SiLU(), torch.nn.Linear(96, 64))
    if quant == "int8":
        bnb = pytest.importorskip("bitsandbytes")
        qmodel = torch.nn.Sequential(bnb.nn.Linear8bitLt(64, 96, has_fp16_weights=False, threshold=0.0),
                                     torch.nn.SiLU(), bnb.nn.Linear8bitLt(96, 64, has_fp16_weights=False,
                                                                          threshold=0.0))
        for q, m in ((qmodel[0], model[0]), (qmodel[2], model[2])):
            q.weight = bnb.nn.Int8Params(m.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
            q.bias = torch.nn.Parameter(m.bias.data.clone(), requires_grad=False)
        model = qmodel.to("cpu")  # .to() quantizes: int8 codes in weight, their scales in weight.SCB
        assert model[0].weight.dtype == torch.int8
    elif quant:
        bnb = pytest.importorskip("bitsandbytes")
        qmodel = torch.nn.Sequential(
            bnb.nn.Linear4bit(64, 96, compute_dtype=torch.float32, quant_type="nf4"), torch.nn.SiLU(),
            bnb.nn.Linear4bit(96, 64, compute_dtype=torch.float32, quant_type="nf4"))
        for q, m in ((qmodel[0], model[0]), (qmodel[2], model[2])):
            q.weight = bnb.nn.Params4bit(m.weight.data.clone(), requires_grad=False, quant_type="nf4")
            q.bias = torch.nn.Parameter(m.bias.data.clone(), requires_grad=False)
        model = qmodel
        model[0].weight = model[0].weight._quantize("cpu") if not model[0].weight.bnb_quantized else model[0].weight
        model[2].weight = model[2].weight._quantize("cpu") if not model[2].weight.bnb_quantized else model[2].weight
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules=["0", "2"], bias=bias)
    peft_model = get_peft_model(model, config)
    for name, p in peft_model.named_parameters():  # B starts at zero in PEFT: make the adapter do something
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return peft_model


def grads(model, x):
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out.square().mean()).backward()
    g = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), x.grad.clone(), g


@pytest.mark.parametrize("quant", [False, True])
def test_fused_lora_equals_peft_without_dropout(quant):
    model = lora_mlp(quant, dropout=0.0)
    x = torch.randn(3, 5, 64)
    ref_out, ref_dx, ref_g = grads(model, x)
    assert fuse_lora(model) == 2
    out, dx, g = grads(model, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx, ref_dx, rtol=1e-5, atol=1e-5)
    assert g.keys() == ref_g.keys() and len(g) == 4
    for name in g:
        torch.testing.assert_close(g[name], ref_g[name], rtol=1e-4, atol=1e-6)
    assert unfuse_lora(model) == 2
    again, _, _ = grads(model, x)
    torch.testing.assert_close(again, ref_out)


def test_fused_lora_dropout_regenerates_the_same_mask():
    """With dropout, the gradients equal autograd's through an explicit x * mask with the seed's mask."""
    torch.manual_seed(1)
    base = torch.nn.Linear(32, 48)
    a = torch.randn(4, 32, requires_grad=True)
    b = torch.randn(48, 4, requires_grad=True)
    x = torch.randn(10, 32, requires_grad=True)
    p, seed, scale = 0.3, 1234, 2.0
    y = LoRAFunction.apply(x, a, b, base.bias, base, scale, p, seed)
    y.sum().backward()
    got = (x.grad.clone(), a.grad.clone(), b.grad.clone())
    x.grad = a.grad = b.grad = None
    keep = _keep(x.detach(), p, seed)
    assert 0.5 < keep.mean() < 0.9 and set(keep.unique().tolist()) == {0.0, 1.0}  # a real dropout mask
    ref = base(x) + scale * ((x * keep / (1 - p)) @ a.t()) @ b.t()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    ref.sum().backward()
    for g, r in zip(got, (x.grad, a.grad, b.grad)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_fused_lora_dropout_only_in_training_and_seeded():
    model = lora_mlp(False, dropout=0.5)
    fuse_lora(model)
    x = torch.randn(4, 64)
    model.eval()
    torch.testing.assert_close(model(x), model(x))  # no dropout in eval
    model.train()
    torch.manual_seed(7)
    first = model(x)
    torch.manual_seed(7)
    torch.testing.assert_close(model(x), first)  # the seed comes from the (checkpointed) CPU generator
    assert not torch.allclose(model(x), first)


def test_fused_lora_falls_back_when_adapters_are_disabled():
    model = lora_mlp(False, dropout=0.0)
    x = torch.randn(2, 64)
    with model.disable_adapter():
        plain = model(x)
    fuse_lora(model)
    with model.disable_adapter():
        torch.testing.assert_close(model(x), plain)
    assert not torch.allclose(model(x), plain)
    assert all(getattr(m, FUSED_FLAG, False) for m in (model.base_model.model[0], model.base_model.model[2]))


def test_fused_lora_leaves_int8_layers_to_peft():
    """bitsandbytes' Linear8bitLt subclasses nn.Linear but its weight holds int8 codes (scale in SCB): fusing it
    multiplied by the raw codes (outputs off by ~1,640, issue 19). The fused model must compute PEFT's output."""
    model = lora_mlp("int8", dropout=0.0)
    x = torch.randn(3, 5, 64)
    ref_out, ref_dx, ref_g = grads(model, x)
    fuse_lora(model)
    out, dx, g = grads(model, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dx, ref_dx, rtol=1e-5, atol=1e-5)
    for name in ref_g:
        torch.testing.assert_close(g[name], ref_g[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("quant", [False, True])
@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_fused_lora_trains_base_biases_as_peft_does(quant, bias):
    """lora.bias=all|lora_only makes the base layers' biases trainable (Qwen2's q/k/v biases): their gradients
    must be PEFT's (on e45111a the fused path returned none)."""
    model = lora_mlp(quant, dropout=0.0, bias=bias)
    x = torch.randn(3, 5, 64)
    ref_out, _, ref_g = grads(model, x)
    assert sum("bias" in n for n in ref_g) == 2
    fuse_lora(model)
    out, _, g = grads(model, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert g.keys() == ref_g.keys()
    for name in g:
        torch.testing.assert_close(g[name], ref_g[name], rtol=1e-4, atol=1e-6)


def test_fused_lora_dropout_scales_kept_inputs_exactly_in_bf16():
    """Kept inputs are x / (1-p) rounded once to bf16, what CUDA's dropout kernel (PEFT's nn.Dropout on a GPU)
    computes: on e45111a the bf16 mask held 1/0.95 as 1.0547 and every kept value was off by up to 0.2%.
    The layer is made to output dropout(x) itself: A and B identities, scale 1, base weight and bias zero."""
    from peft import LoraConfig, get_peft_model

    n, p = 64, 0.05
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(n, n)),
                           LoraConfig(r=n, lora_alpha=n, lora_dropout=p, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.base_layer.weight.zero_()
        layer.base_layer.bias.zero_()
        layer.lora_A["default"].weight.copy_(torch.eye(n))
        layer.lora_B["default"].weight.copy_(torch.eye(n))
    model = model.to(torch.bfloat16).train()
    fuse_lora(model)
    torch.manual_seed(0)
    x = torch.randn(256, n, dtype=torch.bfloat16)
    y = model(x).detach()
    kept = y != 0
    assert 0.9 < kept.float().mean() < 0.99
    exact = (x.double() / (1 - p)).to(torch.bfloat16)
    torch.testing.assert_close(y[kept], exact[kept], rtol=0, atol=0)
    # PEFT's own dropout scale in fp32 (the same layer unfused): kept values are x * float32(1 / (1-p))
    unfuse_lora(model)
    model = model.float()
    y32 = model(x.float()).detach()
    kept32 = y32 != 0
    torch.testing.assert_close(y32[kept32], x.float()[kept32] * (1 / (1 - p)), rtol=0, atol=0)
    fuse_lora(model)
    y32f = model(x.float()).detach()
    kept32f = y32f != 0
    torch.testing.assert_close(y32f[kept32f], x.float()[kept32f] * (1 / (1 - p)), rtol=0, atol=0)


def test_fused_lora_falls_back_in_eval_and_when_a_4bit_weight_lost_its_quant_state(monkeypatch):
    """Eval mode and generation run PEFT's forward; so does a 4-bit layer whose weight lost its quant_state
    (FSDP's re-wrapped parameters), where the fused path would multiply by the packed uint8 codes."""
    def refuse(*a, **k):
        raise AssertionError("the fused function ran")

    monkeypatch.setattr(LoRAFunction, "apply", refuse)
    x = torch.randn(2, 64)
    plain = lora_mlp(False, dropout=0.1)
    fuse_lora(plain)
    plain.eval()
    with torch.no_grad():
        plain(x)
    plain.train()
    with pytest.raises(AssertionError, match="fused function ran"):
        plain(x)
    model = lora_mlp(True, dropout=0.1)
    fuse_lora(model)
    layer = model.base_model.model[0]
    seen = []
    peft_forward = layer._medchat_peft_forward
    monkeypatch.setattr(layer, "_medchat_peft_forward", lambda *a, **k: seen.append(1) or peft_forward(*a, **k))
    base = layer.get_base_layer()
    base.quant_state = base.weight.quant_state  # where bitsandbytes keeps it to restore it (as under FSDP)
    monkeypatch.setattr(base.weight, "quant_state", None)
    with pytest.raises(AssertionError, match="fused function ran"):  # layer 2 still fuses
        model(x)
    assert seen == [1]


def test_fused_lora_bf16_autocast_close_to_peft():
    model = lora_mlp(False, dropout=0.0)
    x = torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_out, ref_dx, ref_g = grads(model, x)
        fuse_lora(model)
        out, dx, g = grads(model, x)
    assert out.dtype == ref_out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref_out.float(), rtol=2e-2, atol=2e-2)
    for name in g:
        assert g[name].dtype == torch.float32
        rel = (g[name] - ref_g[name]).norm() / ref_g[name].norm()
        assert rel < 2e-2, name


# ----- micro-batch plan --------------------------------------------------------------------------------

def linear_estimate(per_token: int, fixed: int, ckpt_saving: float = 0.5, offload_saving: float = 0.2):
    """A toy memory model: checkpointing a layer saves part of its per-token bytes, offloading some more."""
    def estimate(tokens, checkpointed, offload):
        frac = checkpointed / 32
        return int(fixed + tokens * per_token * (1 - ckpt_saving * frac - (offload_saving * frac if offload else 0)))
    return estimate


def test_micro_batch_largest_that_fits_without_checkpointing_keeps_the_step_batch():
    est = linear_estimate(per_token=1_000_000, fixed=GIB)
    # 16 rows x 1024 per step; budget fits 8 rows without checkpointing
    plan = choose_micro_batch(rows_per_step=16, configured_batch=4, max_length=1024, layers=32,
                              budget_bytes=GIB + 8 * 1024 * 1_000_000, estimate=est)
    assert (plan.per_device_train_batch_size, plan.gradient_accumulation_steps) == (8, 2)
    assert plan.checkpointed_layers == 0 and not plan.offload and plan.fits


def test_micro_batch_small_budget_shrinks_then_checkpoints_then_offloads():
    est = linear_estimate(per_token=1_000_000, fixed=GIB)
    fits_one_row = GIB + 1024 * 1_000_000
    plan = choose_micro_batch(rows_per_step=4, configured_batch=4, max_length=1024, layers=32,
                              budget_bytes=fits_one_row, estimate=est)
    assert (plan.per_device_train_batch_size, plan.gradient_accumulation_steps, plan.checkpointed_layers) == (1, 4, 0)
    # less than one row without checkpointing: the configured 4 rows with some checkpointing do not fit either
    plan = choose_micro_batch(rows_per_step=4, configured_batch=4, max_length=1024, layers=32,
                              budget_bytes=GIB + int(0.6 * 1024 * 1_000_000), estimate=est)
    assert plan.checkpointed_layers == 32 and plan.per_device_train_batch_size == 1 and not plan.offload
    plan = choose_micro_batch(rows_per_step=4, configured_batch=4, max_length=1024, layers=32,
                              budget_bytes=GIB + int(0.35 * 1024 * 1_000_000), estimate=est)
    assert plan.offload and plan.fits and plan.checkpointed_layers == 32
    plan = choose_micro_batch(rows_per_step=4, configured_batch=4, max_length=1024, layers=32,
                              budget_bytes=GIB // 2, estimate=est)
    assert not plan.fits and plan.per_device_train_batch_size == 1


def test_micro_batch_prefers_partial_checkpointing_at_the_configured_size():
    est = linear_estimate(per_token=1_000_000, fixed=GIB)
    plan = choose_micro_batch(rows_per_step=4, configured_batch=4, max_length=1024, layers=32,
                              budget_bytes=GIB + int(3.5 * 1024 * 1_000_000), estimate=est)
    # 4 rows need ~4 GiB of activations, 3.5 fit: 2 rows x 2 would fit without checkpointing, but a launch-bound
    # step costs nearly twice as much split in two (0.45x measured), while 8 of 32 layers checkpointed (the
    # fewest every_n_layers gives that fit: each saves half its bytes here) recompute a quarter of one forward
    assert (plan.per_device_train_batch_size, plan.gradient_accumulation_steps) == (4, 1)
    assert plan.checkpointed_layers == 8 and not plan.offload and plan.fits
    # where even every layer checkpointed does not fit the configured rows, the smaller micro-batch without any
    plan = choose_micro_batch(rows_per_step=4, configured_batch=4, max_length=1024, layers=32,
                              budget_bytes=GIB + int(1.9 * 1024 * 1_000_000), estimate=est)
    assert (plan.per_device_train_batch_size, plan.checkpointed_layers) == (1, 0)
    with pytest.raises(ValueError, match="rows_per_step"):
        choose_micro_batch(rows_per_step=6, configured_batch=4, max_length=8, layers=2, budget_bytes=1, estimate=est)


def test_checkpoint_counts_are_what_every_n_layers_expresses():
    assert checkpoint_counts(32) == [1, 2, 3, 4, 5, 6, 7, 8, 11, 16, 32]


# ----- generation under a static cache -----------------------------------------------------------------

def test_static_generation_shape_is_one_per_eval_set_and_results_equal_dynamic():
    from medchat.config import GenerationSettings
    from medchat.evaluation.generation import generate, resolve_cache, static_shape

    assert resolve_cache("auto", torch.device("cpu")) is None
    assert resolve_cache("auto", torch.device("cuda")) == "static"
    assert static_shape([[1] * 5, [1] * 70, [1] * 3], batch_size=2) == (2, 128)
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0,
                                         eos_token_id=2)).eval()
    model.generation_config = GenerationConfig(eos_token_id=2, pad_token_id=0)

    class Tok:
        pad_token_id, eos_token_id = 0, 2
        all_special_tokens: list = []  # formatting.stop_token_ids also looks for the family end tokens

        def get_vocab(self):
            return {}

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    prompts = [[1, 5, 9, 13], [1, 7], [1, 3, 4, 5, 6, 8, 10], [1, 11, 12]]
    dynamic = generate(model, Tok(), prompts, GenerationSettings(max_new_tokens=6), batch_size=3)
    padded = generate(model, Tok(), prompts, GenerationSettings(max_new_tokens=6), batch_size=3,
                      cache_implementation="static")
    assert [g.token_ids for g in padded] == [g.token_ids for g in dynamic]
    assert all(len(g.token_ids) > 0 for g in dynamic)


H200 = dict(cuda=True, gpus=1, bf16=True, gpu_memory_bytes=141 * 10**9, liger=True)


def mistral_cfg(tmp_path, *overrides):
    """The mistral7b preset on a Mistral-7B-shaped config written to tmp_path (no weights anywhere)."""
    from transformers import MistralConfig

    from conftest import compose

    if not (tmp_path / "config.json").exists():
        MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, sliding_window=None).save_pretrained(tmp_path)
    return compose("model=mistral7b", "lora=r32", "quant=nf4", f"model.name_or_path={tmp_path}", *overrides)


def test_auto_micro_batch_plan_on_a_gpu_shaped_machine(tmp_path):
    """trainer.memory_budget_gib -> the run plan's batch split, checkpointing and offloading (Mistral-7B shape),
    and the SFTConfig built from that plan."""
    from medchat import plan as run_plan, training
    from medchat.hardware import Hardware

    hw = Hardware(**H200)
    # with Liger on, as these memory points were measured (auto leaves it off: plan.choose_liger)
    seen = {budget: run_plan.resolve(mistral_cfg(tmp_path, f"trainer.memory_budget_gib={budget}",
                                                 "trainer.use_liger_kernel=true"), hw)
            for budget in (6, 23)}
    p = seen[23]  # fused LoRA: dropout costs nothing, 4 x 1,024 fits (measured 22.4 GiB on an H200)
    assert (p.model.train_attention, p.liger, p.fused_lora, p.compile) == ("flex_attention", True, True, False)
    assert (p.batch.per_device_train_batch_size, p.batch.gradient_accumulation_steps,
            p.batch.activation_offloading) == (4, 1, False)
    assert not p.checkpointing.enabled and p.batch.micro_batch is not None
    # the eager defaults (Liger off: 28.5 GiB estimated at 4 x 1,024) under 23 GiB: the configured 4 rows with
    # every third layer checkpointed, not 2 rows x 2 (which fits with none, but ran at 0.45x on one H100 eager)
    p = run_plan.resolve(mistral_cfg(tmp_path, "trainer.memory_budget_gib=23", "trainer.compile=false"), hw)
    assert (p.batch.per_device_train_batch_size, p.batch.gradient_accumulation_steps) == (4, 1)
    assert p.checkpointing.enabled and p.checkpointing.checkpointed_layers == 11
    unbounded = run_plan.resolve(mistral_cfg(tmp_path, "trainer.compile=false"), hw).batch.micro_batch.estimate_bytes
    assert p.batch.micro_batch.estimate_bytes <= 23 * 2**30 < unbounded
    # under auto the compiled step, 2 rows x 2 with nothing checkpointed (9,733 tokens/s at 21.21 GiB on one H100,
    # the eager plan 7,494 in the same call: bench/RESULTS.md, issue 23, call 18), estimated within the budget at
    # the compiled activations and at least the peak measured
    c = run_plan.resolve(mistral_cfg(tmp_path, "trainer.memory_budget_gib=23"), hw)
    assert c.compile and (c.batch.per_device_train_batch_size, c.batch.gradient_accumulation_steps) == (2, 2)
    assert not c.checkpointing.enabled and c.fixed_shape_tokens == 2 * 1024
    assert 21.21 * 2**30 <= c.batch.micro_batch.estimate_bytes <= 23 * 2**30
    assert c.compile_reason.startswith("auto: on, split") and "11 of 32 layers checkpointed" in c.compile_reason
    p = seen[6]  # measured 5.77 GiB on an H200 with this plan
    assert (p.batch.per_device_train_batch_size, p.batch.gradient_accumulation_steps,
            p.batch.activation_offloading) == (2, 2, True)
    assert p.checkpointing.enabled and p.checkpointing.checkpointed_layers == 32
    assert p.checkpointing.kwargs() == {"use_reentrant": False}
    assert p.to_dict()["batch"]["micro_batch"]["offload"] is True  # saved in RUN/plan.json
    # the builder takes the plan's numbers (SFTConfig refuses bf16 without a GPU: build it with the CPU flags)
    cpu_flags = run_plan.resolve(mistral_cfg(tmp_path), Hardware())
    import dataclasses

    mistral = mistral_cfg(tmp_path)
    args = training.sft_config(mistral.trainer, mistral.tracker, tmp_path, dataclasses.replace(
        p, precision="fp32", use_cpu=True, optim=cpu_flags.optim, liger=False))
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.activation_offloading,
            args.gradient_checkpointing) == (2, 2, True, True)


def test_speed_switches_follow_the_machine_and_the_config(tmp_path):
    from medchat import plan as run_plan
    from medchat.config import ConfigError
    from medchat.config_checks import validate
    from medchat.hardware import Hardware

    cpu = run_plan.resolve(mistral_cfg(tmp_path, "trainer.memory_budget_gib=6"), Hardware())
    assert (cpu.fused_lora, cpu.compile, cpu.batch.micro_batch) == (False, False, None)  # auto is off on CPU
    t = mistral_cfg(tmp_path).trainer
    assert (cpu.batch.per_device_train_batch_size, cpu.batch.gradient_accumulation_steps) == (
        t.per_device_train_batch_size, t.gradient_accumulation_steps)
    gpu = Hardware(**H200)
    fixed = run_plan.resolve(mistral_cfg(tmp_path, "trainer.micro_batch=fixed", "trainer.fused_lora=false",
                                         "trainer.compile=true", "trainer.memory_budget_gib=6"), gpu)
    assert (fixed.fused_lora, fixed.compile, fixed.batch.micro_batch) == (False, True, None)
    assert fixed.checkpointing.enabled and "auto micro-batch" not in fixed.checkpointing.reason
    no_offload = run_plan.resolve(mistral_cfg(tmp_path, "trainer.memory_budget_gib=6",
                                              "trainer.activation_offloading=false"), gpu)
    assert not no_offload.batch.activation_offloading and "trainer.activation_offloading=false" in \
        no_offload.batch.micro_batch.reason
    with pytest.raises(ConfigError, match="trainer.fused_lora"):  # checked with every choice (config.CHOICES)
        validate(mistral_cfg(tmp_path, "trainer.fused_lora=maybe"))
    # fused LoRA cannot serve FSDP's re-wrapped 4-bit weights nor bitsandbytes int8: PEFT's forward, even if asked
    import dataclasses

    fsdp = dataclasses.replace(gpu, fsdp=True, gpus=2, world_size=2, local_world_size=2)
    assert not run_plan.resolve(mistral_cfg(tmp_path, "trainer.fused_lora=true"), fsdp).fused_lora
    assert not run_plan.resolve(mistral_cfg(tmp_path, "quant=int8"), gpu).fused_lora
    assert run_plan.resolve(mistral_cfg(tmp_path), gpu).fused_lora


H100 = dict(cuda=True, gpus=1, bf16=True, gpu_memory_bytes=80 * 10**9, liger=True)


def test_compile_auto_is_on_only_where_the_gpu_record_measured_it(tmp_path):
    """trainer.compile=auto compiles the Mistral-7B defaults on one GPU (measured 1.63x the eager step and within
    the equivalence floors: bench/RESULTS.md, issue 23) with a memory estimate that covers the compiled peaks
    measured there, and stays eager wherever the record did not measure it, saying why."""
    import dataclasses

    from medchat import plan as run_plan
    from medchat.hardware import Hardware
    from medchat.sweeps.pack_checks import eager_resolve

    gib = 2**30
    p = run_plan.resolve(mistral_cfg(tmp_path), Hardware(**H100))
    assert p.compile and p.fixed_shape_tokens == 4 * 1024 and "auto: on" in p.compile_reason
    assert (p.batch.per_device_train_batch_size, p.checkpointing.checkpointed_layers) == (4, 0)
    # the plan's estimate is the compiled step's: at least the 36.28 GiB measured (one H100, call 14)
    assert 36.28 * gib <= p.batch.micro_batch.estimate_bytes <= 40 * gib
    assert "compile True (auto: on" in p.describe()
    # 4 x 2,048 compiled measured 67.07 GiB (call 11): its estimate covers that, which an H200 fits and an H100's
    # default budget (85% of 80 GB) does not: there the compiled step runs 2 rows x 2, the same rows a step
    big = ("trainer.max_length=2048",)
    h200 = run_plan.resolve(mistral_cfg(tmp_path, *big), Hardware(**H200))
    assert h200.compile and h200.batch.micro_batch.estimate_bytes >= 67.07 * gib
    h100 = run_plan.resolve(mistral_cfg(tmp_path, *big), Hardware(**H100))
    assert h100.compile and h100.fixed_shape_tokens == 2 * 2048 and "auto: on, split" in h100.compile_reason
    assert (h100.batch.per_device_train_batch_size, h100.batch.gradient_accumulation_steps) == (2, 2)
    assert 36.28 * gib <= h100.batch.micro_batch.estimate_bytes <= 0.85 * 80e9
    # not measured: eager under auto, each with its reason
    off = {
        "memory_budget_gib=12 (no compiled split of 2,048 tokens fits)": (
            ("trainer.memory_budget_gib=12",), Hardware(**H100), "no compiled split of at least 2,048 tokens fits"),
        "DPO": (("stage=dpo", "dataset=preference"), Hardware(**H100), "SFT-only"),
        "Liger": (("trainer.use_liger_kernel=true",), Hardware(**H100), "without Liger"),
        "PEFT's forward": (("trainer.fused_lora=false",), Hardware(**H100), "fused LoRA"),
        "two processes": ((), dataclasses.replace(Hardware(**H100), gpus=2, world_size=2, local_world_size=2),
                          "one process"),
        "CPU": ((), Hardware(), "no CUDA GPU"),
        "asked off": (("trainer.compile=false",), Hardware(**H100), "trainer.compile=false"),
        "bf16 weights": (("quant=none",), Hardware(**H200), "NF4"),
        "4 x 4,096 tokens": (("trainer.max_length=4096",), Hardware(**H200), "up to 8,192 tokens"),
    }
    for name, (overrides, hw, why) in off.items():
        q = run_plan.resolve(mistral_cfg(tmp_path, *overrides), hw)
        assert not q.compile and q.fixed_shape_tokens is None and why in q.compile_reason, (name, q.compile_reason)
    # asked for, compile plans the compiled step's memory too where it was measured
    asked = run_plan.resolve(mistral_cfg(tmp_path, "trainer.compile=true"), Hardware(**H100))
    assert asked.compile and asked.batch.micro_batch.estimate_bytes == p.batch.micro_batch.estimate_bytes
    assert asked.compile_reason.startswith("trainer.compile=true; compiled estimate")
    # another architecture: not measured compiled (trainer.compile=true still compiles it)
    from transformers import Qwen2Config

    qwen = tmp_path / "qwen"
    Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                num_attention_heads=14, num_key_value_heads=2).save_pretrained(qwen)
    q = run_plan.resolve(mistral_cfg(tmp_path, f"model.name_or_path={qwen}"), Hardware(**H100))
    assert not q.compile and "not qwen2" in q.compile_reason
    assert run_plan.resolve(mistral_cfg(tmp_path, f"model.name_or_path={qwen}", "trainer.compile=true"),
                            Hardware(**H100)).compile
    # the packed loop runs its own eager step: auto's compile and its fixed shape are dropped there, and its
    # plan holds the eager estimate (medchat.memory's, as with trainer.compile=false)
    e = eager_resolve(mistral_cfg(tmp_path), Hardware(**H100))
    eager = run_plan.resolve(mistral_cfg(tmp_path, "trainer.compile=false"), Hardware(**H100))
    assert (e.compile, e.fixed_shape_tokens, e.batch) == (False, None, eager.batch)
    assert e.batch.micro_batch.estimate_bytes < 36.28 * gib and "packed loop" in e.compile_reason
    assert eager_resolve(mistral_cfg(tmp_path, "trainer.fixed_shape=true"), Hardware(**H100)).fixed_shape_tokens == 4096
    # and a pack of jobs that alone would compile warns that packing them is likely slower (0.73x measured)
    from medchat.sweeps.pack_checks import solo_compiles

    assert "0.73x" in solo_compiles(mistral_cfg(tmp_path), Hardware(**H100))
    assert solo_compiles(mistral_cfg(tmp_path), Hardware()) is None
    assert solo_compiles(mistral_cfg(tmp_path, "trainer.compile=false"), Hardware(**H100)) is None
