"""The speed choices behind `auto`, the memory model they use, and the launch checks, without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose
from medchat import modeling, perf, training
from medchat.config import ConfigError, ModelConfig, QuantConfig, validate

MISTRAL = perf.Arch(layers=32, hidden=4096, intermediate=14336, kv_dim=1024, vocab=32000)
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def fake_gpu(monkeypatch):
    """A machine that reports one 80 GB CUDA GPU (nothing is allocated on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(perf, "gpu_memory_bytes", lambda device=0: 80 * 10**9)


def test_auto_choices_without_a_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert perf.choose_attention("auto", cuda=False, half_precision=False) == "sdpa"
    assert modeling.attn_implementation(ModelConfig(attn_implementation="auto")) == "sdpa"
    assert perf.choose_liger("auto", cuda=False) is False
    plan = training.checkpoint_plan(compose("trainer.gradient_checkpointing=auto"), liger=False)
    assert not plan.enabled and "no GPU" in plan.reason
    args = training.sft_config(compose("trainer.gradient_checkpointing=auto"), tmp_path)
    assert (args.gradient_checkpointing, args.use_liger_kernel, args.optim) == (False, False, "adamw_torch")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        perf.choose_liger("true", cuda=False)


def test_auto_attention_on_a_gpu(monkeypatch):
    monkeypatch.setattr(perf, "flash_attn_installed", lambda: False)
    assert perf.choose_attention("auto", cuda=True, half_precision=True) == "flex_attention"
    assert perf.choose_attention("auto", cuda=True, half_precision=True, supports_flex=False) == "sdpa"
    assert perf.choose_attention("eager", cuda=True, half_precision=True) == "eager"  # explicit values pass through
    monkeypatch.setattr(perf, "flash_attn_installed", lambda: True)
    assert perf.choose_attention("auto", cuda=True, half_precision=True) == "flash_attention_2"
    assert perf.choose_attention("auto", cuda=True, half_precision=False) == "flex_attention"  # fa2 needs half


def test_generation_never_gets_flex_attention(fake_gpu, tiny_dir):
    cfg = ModelConfig(name_or_path=str(tiny_dir), dtype="bfloat16")
    assert modeling.attn_implementation(cfg, str(tiny_dir), training=True) in ("flex_attention", "flash_attention_2")
    assert modeling.attn_implementation(cfg, str(tiny_dir), training=False) in ("sdpa", "flash_attention_2")


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
        est = perf.estimate_peak_bytes(MISTRAL, tokens=tokens, checkpointed_layers=r["checkpointed_layers"],
                                       quant_mode="nf4", lora_r=32, lora_targets=ALL7,
                                       lora_dropout=r["lora_dropout"], liger=r["use_liger_kernel"],
                                       attention=r["attn_implementation"]) / perf.GIB
        assert 0.97 * r["peak_gib"] <= est <= 1.15 * r["peak_gib"], (r["setup"], est, r["peak_gib"])
        checked += 1
    assert checked >= 8


def test_checkpointing_plan_fits_the_budget():
    est = lambda n: perf.estimate_peak_bytes(MISTRAL, tokens=8192, checkpointed_layers=n, quant_mode="nf4",  # noqa: E731
                                             lora_r=32, lora_targets=ALL7, lora_dropout=0.05, liger=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: True)
        roomy = perf.plan_checkpointing("auto", every_n_layers=None, layers=32, estimate=est, budget_bytes=70 * perf.GIB)
        assert not roomy.enabled and roomy.checkpointed_layers == 0
        tight = perf.plan_checkpointing("auto", every_n_layers=None, layers=32, estimate=est, budget_bytes=40 * perf.GIB)
        assert tight.enabled and 1 < tight.every_n_layers < 32 and tight.estimate_bytes <= 40 * perf.GIB
        # the fewest checkpointed layers that fit: one layer fewer would not
        fewer = [perf.checkpointed(32, n) for n in range(32, 1, -1) if perf.checkpointed(32, n) < tight.checkpointed_layers]
        assert all(est(c) > 40 * perf.GIB for c in fewer)
        assert tight.kwargs() == {"use_reentrant": False, "every_n_layers": tight.every_n_layers}
        small = perf.plan_checkpointing("auto", every_n_layers=None, layers=32, estimate=est, budget_bytes=12 * perf.GIB)
        assert small.enabled and small.every_n_layers == 1 and small.checkpointed_layers == 32
        over = perf.plan_checkpointing("auto", every_n_layers=None, layers=32, estimate=est, budget_bytes=5 * perf.GIB)
        assert over.enabled and over.every_n_layers == 1 and "over budget" in over.reason


def test_auto_plan_on_a_gpu_from_the_config(fake_gpu, tmp_path):
    """The default config on an 80 GB GPU: a tiny model never needs checkpointing; a tight budget forces it."""
    cfg = compose("trainer.gradient_checkpointing=auto", "trainer.use_liger_kernel=false")
    assert not training.checkpoint_plan(cfg, liger=False).enabled
    cfg = compose("trainer.gradient_checkpointing=auto", "trainer.memory_budget_gib=0.001")
    assert training.checkpoint_plan(cfg, liger=False).every_n_layers == 1


def test_explicit_checkpointing_values(tmp_path):
    assert training.sft_config(compose("trainer.gradient_checkpointing=true"), tmp_path).gradient_checkpointing
    args = training.sft_config(compose("trainer.gradient_checkpointing=partial", "trainer.checkpoint_every_n_layers=2"),
                               tmp_path)
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False,
                                                                                   "every_n_layers": 2}
    validate(compose("trainer.gradient_checkpointing=True"))  # YAML's booleans arrive as "True"
    with pytest.raises(ConfigError, match="checkpoint_every_n_layers"):
        training.sft_config(compose("trainer.gradient_checkpointing=partial"), tmp_path)
    with pytest.raises(ConfigError, match="trainer.gradient_checkpointing"):
        validate(compose("trainer.gradient_checkpointing=sometimes"))


def test_more_processes_than_gpus_fails_before_loading(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="2 training processes on this machine but 1 visible GPU"):
        perf.check_processes_vs_gpus()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    perf.check_processes_vs_gpus()
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="2 GPUs are visible to a single training process"):
        perf.check_processes_vs_gpus()


def test_fsdp_refuses_quantization_it_cannot_shard(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    model = ModelConfig(dtype="bfloat16")
    with pytest.raises(ConfigError, match="cannot shard bitsandbytes 8-bit"):
        modeling.quantization_config(QuantConfig(mode="int8"), model)
    with pytest.raises(ConfigError, match="quant.quant_storage=bfloat16"):
        modeling.quantization_config(QuantConfig(mode="nf4", quant_storage="uint8"), model)
    bnb = modeling.quantization_config(QuantConfig(mode="nf4"), model)  # left null: set for FSDP
    assert bnb.bnb_4bit_quant_storage == torch.bfloat16
    assert modeling.device_map() is None  # FSDP places the shards itself
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert modeling.quantization_config(QuantConfig(mode="nf4"), model).bnb_4bit_quant_storage == torch.uint8


def test_out_of_memory_says_how_to_fit(tmp_path):
    cfg = compose("trainer.per_device_train_batch_size=8", "trainer.gradient_checkpointing=false")
    args = training.sft_config(cfg, tmp_path)

    class Trainer:  # the step that does not fit
        def __init__(self):
            self.args = args

        def train(self, resume_from_checkpoint=None):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError) as err:
        training.train(Trainer(), cfg)
    text = str(err.value)
    assert "per_device_train_batch_size (now 8)" in text and "gradient_checkpointing=true" in text
    assert "Tried to allocate 2.00 GiB" in text
