"""The speed choices behind `auto` (medchat.plan), the memory model they use (medchat.memory), and the launch
checks (medchat.launch_checks), without a GPU: the machine is a Hardware value, GPU-shaped where needed."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT, compose
from medchat import launch_checks, memory, modeling, plan, training
from medchat.config import ConfigError, ModelConfig, QuantConfig
from medchat.config_checks import validate
from medchat.hardware import Hardware

MISTRAL = memory.Arch(layers=32, hidden=4096, intermediate=14336, kv_dim=1024, vocab=32000)
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CPU = Hardware()
GPU = Hardware(cuda=True, gpus=1, bf16=True, gpu_memory_bytes=80 * 10**9)  # one 80 GB GPU, nothing allocated


def test_auto_choices_without_a_gpu(tmp_path):
    kw = dict(cuda=False, half_precision=False, flash_attn=False, supports_flex=True)
    assert plan.choose_attention("auto", **kw) == "sdpa"
    cpu_model = plan.model_plan(ModelConfig(attn_implementation="auto"), QuantConfig(mode="none"), CPU, "x")
    assert cpu_model.train_attention == cpu_model.generation_attention == "sdpa"
    assert plan.choose_liger("auto", CPU) is False
    cfg = compose("trainer.gradient_checkpointing=auto")
    p = plan.resolve(cfg, CPU)
    assert not p.checkpointing.enabled and "no GPU" in p.checkpointing.reason
    args = training.sft_config(cfg.trainer, cfg.tracker, tmp_path, p)
    assert (args.gradient_checkpointing, args.use_liger_kernel, args.optim) == (False, False, "adamw_torch")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        plan.choose_liger("true", CPU)


def test_auto_attention_on_a_gpu():
    gpu = dict(cuda=True, half_precision=True, flash_attn=False, supports_flex=True)
    assert plan.choose_attention("auto", **gpu) == "flex_attention"
    assert plan.choose_attention("auto", **{**gpu, "supports_flex": False}) == "sdpa"
    assert plan.choose_attention("eager", **gpu) == "eager"  # explicit values pass through
    assert plan.choose_attention("auto", **{**gpu, "flash_attn": True}) == "flash_attention_2"
    # fa2 needs half precision
    assert plan.choose_attention("auto", **{**gpu, "flash_attn": True, "half_precision": False}) == "flex_attention"


def test_generation_never_gets_flex_attention(tiny_dir):
    for hw in (GPU, Hardware(cuda=True, gpus=1, bf16=True, flash_attn=True)):
        cfg = ModelConfig(name_or_path=str(tiny_dir), dtype="bfloat16")
        m = plan.model_plan(cfg, QuantConfig(mode="none"), hw, str(tiny_dir))
        assert m.train_attention in ("flex_attention", "flash_attention_2")
        assert m.generation_attention in ("sdpa", "flash_attention_2")
    explicit = plan.model_plan(ModelConfig(attn_implementation="flex_attention"), QuantConfig(mode="none"), GPU, "x")
    assert (explicit.train_attention, explicit.generation_attention) == ("flex_attention", "sdpa")


def test_memory_model_matches_the_h100_measurements():
    """The estimate behind `auto` against the peaks measured on an H100 (bench/results/*.json): within 15%,
    never more than 3% under."""
    measured = []
    for name in ("h100_ablations.json", "h100_record.json"):
        measured += json.loads((ROOT / "bench/results" / name).read_text())["setups"]
    checked = 0
    for r in measured:
        if r["setup"] == "baseline" or "peak_gib" not in r:
            continue
        tokens = {"4x1024": 4096, "2x2048": 4096, "4x2048": 8192}[r["micro_batch"].split()[0]]
        est = memory.estimate_peak_bytes(MISTRAL, tokens=tokens, checkpointed_layers=r["checkpointed_layers"],
                                       quant_mode="nf4", lora_r=32, lora_targets=ALL7,
                                       lora_dropout=r["lora_dropout"], liger=r["use_liger_kernel"],
                                       attention=r["attn_implementation"]) / memory.GIB
        assert 0.97 * r["peak_gib"] <= est <= 1.15 * r["peak_gib"], (r["setup"], est, r["peak_gib"])
        checked += 1
    assert checked >= 8


def test_checkpointing_plan_fits_the_budget():
    est = lambda n: memory.estimate_peak_bytes(  # noqa: E731
        MISTRAL, tokens=8192, checkpointed_layers=n, quant_mode="nf4", lora_r=32, lora_targets=ALL7, lora_dropout=0.05,
        liger=True)

    def auto(budget_gib: int) -> memory.CheckpointPlan:
        return memory.plan_checkpointing("auto", cuda=True, every_n_layers=None, layers=32, estimate=est,
                                         budget_bytes=budget_gib * memory.GIB)

    roomy = auto(70)
    assert not roomy.enabled and roomy.checkpointed_layers == 0
    tight = auto(40)
    assert tight.enabled and 1 < tight.every_n_layers < 32 and tight.estimate_bytes <= 40 * memory.GIB
    # the fewest checkpointed layers that fit: one layer fewer would not
    fewer = [c for c in (memory.checkpointed(32, n) for n in range(32, 1, -1)) if c < tight.checkpointed_layers]
    assert all(est(c) > 40 * memory.GIB for c in fewer)
    assert tight.kwargs() == {"use_reentrant": False, "every_n_layers": tight.every_n_layers}
    small = auto(12)
    assert small.enabled and small.every_n_layers == 1 and small.checkpointed_layers == 32
    over = auto(5)
    assert over.enabled and over.every_n_layers == 1 and "over budget" in over.reason


def test_auto_plan_on_a_gpu_from_the_config(tmp_path):
    """The default config on an 80 GB GPU: a tiny model never needs checkpointing; a tight budget forces it."""
    cfg = compose("trainer.gradient_checkpointing=auto", "trainer.use_liger_kernel=false")
    roomy = plan.resolve(cfg, GPU).checkpointing
    assert not roomy.enabled and roomy.estimate_bytes < 80 * 10**9
    # trainer.micro_batch=fixed: the config's split, checkpointed by medchat.memory's planner alone
    cfg = compose("trainer.gradient_checkpointing=auto", "trainer.memory_budget_gib=0.001", "trainer.micro_batch=fixed")
    tight = plan.resolve(cfg, GPU).checkpointing
    assert tight.enabled and tight.every_n_layers == 1 and "over budget" in tight.reason
    # micro_batch=auto (the default): the same hopeless budget ends in the last resort, which does not fit
    auto = plan.resolve(compose("trainer.gradient_checkpointing=auto", "trainer.memory_budget_gib=0.001"), GPU)
    assert auto.batch.micro_batch is not None and not auto.batch.micro_batch.fits
    assert auto.checkpointing.enabled and auto.batch.activation_offloading and auto.checkpointing.estimate_bytes > 0
    assert auto.batch.per_device_train_batch_size == 1


def _sft(cfg, tmp_path):
    return training.sft_config(cfg.trainer, cfg.tracker, tmp_path, plan.resolve(cfg, CPU))


def test_explicit_checkpointing_values(tmp_path):
    assert _sft(compose("trainer.gradient_checkpointing=true"), tmp_path).gradient_checkpointing
    args = _sft(compose("trainer.gradient_checkpointing=partial", "trainer.checkpoint_every_n_layers=2"), tmp_path)
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False,
                                                                                   "every_n_layers": 2}
    validate(compose("trainer.gradient_checkpointing=True"))  # YAML's booleans arrive as "True"
    with pytest.raises(ConfigError, match="checkpoint_every_n_layers"):
        _sft(compose("trainer.gradient_checkpointing=partial"), tmp_path)
    with pytest.raises(ConfigError, match="trainer.gradient_checkpointing"):
        validate(compose("trainer.gradient_checkpointing=sometimes"))


def test_more_processes_than_gpus_fails_before_loading(monkeypatch):
    two_ranks = dict(cuda=True, world_size=2, local_world_size=2, local_rank=1)
    with pytest.raises(ConfigError, match="2 training processes on this machine but 1 visible GPU"):
        launch_checks.check_processes_vs_gpus(Hardware(gpus=1, **two_ranks))
    with pytest.raises(ConfigError, match="2 training processes on this machine but 1 visible GPU"):
        plan.resolve(compose(), Hardware(gpus=1, **two_ranks))  # the plan checks it first
    launch_checks.check_processes_vs_gpus(Hardware(gpus=2, **two_ranks))
    with pytest.raises(ConfigError, match="2 GPUs are visible to a single training process"):
        launch_checks.check_processes_vs_gpus(Hardware(cuda=True, gpus=2))
    # what hardware.detect() reads from the launcher's environment
    from medchat.hardware import detect

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (detect().world_size, detect().local_world_size, detect().local_rank) == (2, 2, 1)


def test_fsdp_refuses_quantization_it_cannot_shard(monkeypatch):
    fsdp = Hardware(cuda=True, gpus=2, bf16=True, world_size=2, local_world_size=2, fsdp=True)
    model = ModelConfig(dtype="bfloat16")
    with pytest.raises(ConfigError, match="cannot shard bitsandbytes 8-bit"):
        plan.model_plan(model, QuantConfig(mode="int8"), fsdp, "x")
    with pytest.raises(ConfigError, match="quant.quant_storage=bfloat16"):
        plan.model_plan(model, QuantConfig(mode="nf4", quant_storage="uint8"), fsdp, "x")
    m = plan.model_plan(model, QuantConfig(mode="nf4"), fsdp, "x")
    assert modeling.quantization_config(m.quant).bnb_4bit_quant_storage == torch.bfloat16  # left null: set for FSDP
    assert m.device is None  # FSDP places the shards itself
    plain = plan.model_plan(model, QuantConfig(mode="nf4"), GPU, "x")
    assert modeling.quantization_config(plain.quant).bnb_4bit_quant_storage == torch.uint8
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    from medchat.hardware import detect

    assert detect().fsdp


def test_out_of_memory_says_how_to_fit(tmp_path):
    cfg = compose("trainer.per_device_train_batch_size=8", "trainer.gradient_checkpointing=false")
    args = _sft(cfg, tmp_path)

    class Trainer:  # the step that does not fit
        def __init__(self):
            self.args = args

        def train(self, resume_from_checkpoint=None):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError) as err:
        training.run_trainer(Trainer(), cfg.trainer)
    text = str(err.value)
    assert "per_device_train_batch_size (now 8)" in text and "gradient_checkpointing=true" in text
    assert "Tried to allocate 2.00 GiB" in text
