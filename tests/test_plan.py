"""The run plan: every `auto` resolved once, from the config and a machine description, without weights."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import transformers

from conftest import ROOT, compose
from medchat import modeling, plan, run_models, runs
from medchat.config import ConfigError, QuantConfig
from medchat.hardware import Hardware, detect

H100 = Hardware(cuda=True, gpus=1, bf16=True, gpu_memory_bytes=80 * 10**9, liger=True)


@pytest.fixture
def no_weights(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def test_a_gpu_shaped_machine_gets_the_gpu_plan(no_weights):
    cfg = compose("model.dtype=auto", "model.attn_implementation=auto", "trainer.precision=auto", "trainer.gradient_checkpointing=auto",
                  "trainer.use_liger_kernel=auto", "trainer.optim=auto")
    p = plan.resolve(cfg, H100)
    m = p.model
    assert (m.dtype, p.precision, p.use_cpu, m.device, p.optim) == ("bfloat16", "bf16", False, 0, "adamw_torch_fused")
    assert (m.train_attention, m.generation_attention) == ("flex_attention", "sdpa")
    assert p.liger is False  # auto leaves Liger off: it failed the GPU equivalence check (plan.choose_liger)
    assert plan.resolve(compose("trainer.use_liger_kernel=true"), H100).liger is True
    assert m.quant.compute_dtype == "bfloat16"  # quant.compute_dtype=auto follows the model's dtype
    assert not p.checkpointing.enabled and 0 < p.checkpointing.estimate_bytes < 0.85 * 80 * 10**9
    assert set(p.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with_fa2 = plan.resolve(cfg, Hardware(cuda=True, gpus=1, bf16=True, flash_attn=True))
    assert with_fa2.model.train_attention == with_fa2.model.generation_attention == "flash_attention_2"
    assert with_fa2.checkpointing.enabled and "not estimated" in with_fa2.checkpointing.reason  # memory unknown
    cpu = plan.resolve(cfg, Hardware())
    assert (cpu.model.dtype, cpu.precision, cpu.optim, cpu.liger, cpu.model.train_attention) == (
        "float32", "fp32", "adamw_torch", False, "sdpa")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.optim = "sgd"  # the plan is immutable


def test_choices_the_machine_cannot_honour_fail_naming_the_key():
    with pytest.raises(ConfigError, match="trainer.use_liger_kernel=true needs a CUDA GPU"):
        plan.resolve(compose("trainer.use_liger_kernel=true"), Hardware())
    with pytest.raises(ConfigError, match="liger-kernel is not installed"):
        plan.resolve(compose("trainer.use_liger_kernel=true"), Hardware(cuda=True, gpus=1, bf16=True))
    with pytest.raises(ConfigError, match="quant.mode=nf4 needs bitsandbytes"):
        plan.resolve(compose("quant=nf4"), Hardware(bitsandbytes=False))
    with pytest.raises(ConfigError, match="quant.compute_dtype=bfloat16: this GPU has no bf16"):
        plan.model_plan(compose().model, QuantConfig(mode="nf4", compute_dtype="bfloat16"),
                        Hardware(cuda=True, gpus=1, bf16=False), "x")


def test_training_saves_the_plan_it_ran_with(trained_run):
    saved = json.loads((trained_run / "plan.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert saved["model"]["train_attention"] == metrics["speed"]["attn_implementation"]
    assert saved["optim"] == metrics["speed"]["optim"] and saved["liger"] == metrics["speed"]["use_liger_kernel"]
    assert saved["checkpointing"]["enabled"] == metrics["speed"]["gradient_checkpointing"]
    assert saved["target_modules"] == metrics["target_modules"]
    assert saved["hardware"]["cuda"] == torch.cuda.is_available() and saved["world_size"] == metrics["world_size"]
    assert runs.open_run(trained_run).trained_plan() == saved
    # the same function answers for the same config on the same machine (the evaluation plan adds the data's counts)
    again = plan.resolve(runs.read_config(trained_run), detect()).to_dict()
    evaluation = saved.pop("evaluation")
    assert again.pop("evaluation")["planned_steps"] == evaluation["planned_steps"] == metrics["global_step"] == 4
    assert again == saved and evaluation["rows"] == metrics["data"]["eval"] == 4


def test_generation_on_a_gpu_shaped_plan_uses_the_generation_attention(trained_run, monkeypatch, tmp_path):
    """Chat, the app and evaluate.py build their model through medchat.runs: on a GPU whose training attention
    is flex_attention, generation still loads sdpa, with the KV cache on."""
    import shutil

    from omegaconf import OmegaConf

    run_dir = tmp_path / "run"  # the tiny preset pins sdpa and float32: this copy leaves both to `auto`
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.model.attn_implementation, cfg.model.dtype = "auto", "auto"
    OmegaConf.save(cfg, run_dir / "config.yaml")
    seen = {}

    class Loaded(Exception):
        pass

    def from_pretrained(path, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    run = runs.open_run(run_dir)
    gpu = Hardware(cuda=True, gpus=1, bf16=True, gpu_memory_bytes=80 * 10**9)
    path = modeling.model_path(run.cfg.model)
    assert plan.model_plan(run.cfg.model, run.cfg.quant, gpu, path).train_attention == "flex_attention"
    with pytest.raises(Loaded):
        run_models.load_for_generation(run, hw=gpu)
    assert seen["attn_implementation"] == "sdpa" and seen["device_map"] == {"": 0} and seen["dtype"] == torch.bfloat16
    # evaluate.py's plan, on the same machine
    from test_evaluate_cli import compose_eval

    from medchat.evaluation.plan import make_plan

    monkeypatch.setattr("medchat.hardware.detect", lambda: gpu)
    evaluation = make_plan(compose_eval(f"run_dir={run_dir}")).model
    assert (evaluation.train_attention, evaluation.generation_attention) == ("flex_attention", "sdpa")


def test_the_training_callback_generates_with_the_generation_attention(tiny_dir, tiny_tokenizer, monkeypatch, tmp_path):
    """A model built for training (here eager) is switched to the plan's generation attention while the
    eval.every_steps callback generates, and switched back for the next training step."""
    from medchat.config import ModelConfig
    from medchat.data import load_split
    from medchat.evaluation import callback

    model = modeling.load_model(plan.model_plan(ModelConfig(dtype="float32", attn_implementation="eager"),
                                                QuantConfig(mode="none"), Hardware(), str(tiny_dir)))
    cfg = compose("eval.every_steps=1", "eval.num_samples=2", "eval.max_new_tokens=2", "eval.metrics=[bleu]",
                  "tracker=none", "dataset.n=20", "dataset.eval_size=4")
    [cb] = callback.generation_callbacks(cfg.eval, tiny_tokenizer, load_split(cfg.dataset).eval, tmp_path, "sdpa",
                                         prompt_format=cfg.dataset.prompt_format, backend=cfg.tracker.backend)
    during = []
    real = callback.generate

    def spy(m, *a, **k):
        during.append(m.config._attn_implementation)
        return real(m, *a, **k)

    monkeypatch.setattr(callback, "generate", spy)
    cb.log_generations(model, step=1)
    assert during == ["sdpa"] and model.config._attn_implementation == "eager"


def test_python_m_medchat_plan_prints_the_plan(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "medchat.plan", "trainer=debug", "lora.targets=qv"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first, evaluation, rest = out.stdout.split("\n", 2)
    assert first.startswith("run plan: ") and "attention" in first
    assert evaluation.startswith("evaluation: 96 held-out rows") and "every 4 optimizer steps (2 times in 8" in evaluation
    shown = json.loads(rest)
    assert shown["target_modules"] == ["q_proj", "v_proj"] and shown["hardware"]["cuda"] == torch.cuda.is_available()
    if not torch.cuda.is_available():  # the refusal through the same main(), in this process (imports cost ~10 s)
        from medchat.plan import main

        with pytest.raises(SystemExit, match="medchat.plan: error: .*trainer.precision=bf16 needs a CUDA GPU"):
            main(["trainer.precision=bf16"])


def test_a_large_dataset_without_eval_settings_is_scored_on_1000_rows_about_10_times(tmp_path, capsys):
    """Issue 22: dataset.eval_size and trainer.eval_steps unset on 20,000 rows: 1,000 held-out rows (not 10%),
    scored every 475 of the 4,750 steps (not every logging_steps=10), as `python -m medchat.plan` says."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"question": f"What helps with symptom {i}?", "answer": f"Rest, {i}."}) + "\n"
                            for i in range(20000)))
    # trainer.eval_steps=null: unset as for any model but the tiny default run, which pins its measured cadence
    plan.main([f"dataset.path={rows}", "dataset.split_by=null", "trainer.packing=false", "trainer.eval_steps=null"])
    lines = capsys.readouterr().out.split("\n", 2)
    assert lines[1].startswith("evaluation: 1,000 held-out rows scored before training, every 475 optimizer steps "
                               "(10 times in 4,750 planned optimizer steps"), lines[1]
    shown = json.loads(lines[2])["evaluation"]
    assert (shown["rows"], shown["every"], shown["evaluations"], shown["planned_steps"]) == (1000, 475, 10, 4750)


def test_the_planned_cadence_reaches_the_trainer_and_explicit_settings_win(tmp_path):
    from medchat import training
    from medchat.data.prepare import eval_count

    assert (eval_count(None, 20000), eval_count(None, 956), eval_count(0.1, 20000), eval_count(3000, 20000)) == \
        (1000, 96, 2000, 3000)  # 10% capped at 1,000 unless dataset.eval_size is set
    cases = {(): 475, ("trainer.eval_steps=10",): 10,  # set: it wins
             ("trainer.max_steps=120",): 50,  # ~10 per run, but never more often than every 50 steps
             ("trainer.load_best_model_at_end=true", "trainer.save_steps=200"): 200}  # the best must be a checkpoint
    for overrides, every in cases.items():
        unset = [] if any(o.startswith("trainer.eval_steps") for o in overrides) else ["trainer.eval_steps=null"]
        cfg = compose("trainer.packing=false", *unset, *overrides)
        p = plan.with_data(plan.resolve(cfg, Hardware()), cfg, packs=True, train_rows=19000, train_tokens=None,
                           eval_rows=1000, eval_tokens=None)
        assert training.sft_config(cfg.trainer, cfg.tracker, tmp_path, p).eval_steps == every, overrides


def test_fused_lora_is_planned_only_where_it_was_proven_equal(no_weights):
    """auto: fused LoRA under bf16 mixed precision on a GPU only (the GPU equivalence record of issue 19 covers bf16;
    its fp32 run was not within its floor); an explicit true still switches it on."""
    assert plan.resolve(compose("trainer.precision=bf16"), H100).fused_lora is True
    assert plan.resolve(compose("trainer.precision=fp32"), H100).fused_lora is False
    assert plan.resolve(compose("trainer.precision=fp16"), H100).fused_lora is False
    assert plan.resolve(compose("trainer.precision=fp32", "trainer.fused_lora=true"), H100).fused_lora is True
    assert plan.resolve(compose(), Hardware()).fused_lora is False  # CPU
