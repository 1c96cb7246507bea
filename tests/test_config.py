"""Every config group option and experiment composes, validates and builds the real library configs."""

from __future__ import annotations

import dataclasses

import peft
import pytest
import transformers
import trl
from hydra.errors import ConfigCompositionException

from conftest import CONF, compose
from medchat import config as schema
from medchat import config_checks
from medchat import modeling, plan, training
from medchat.hardware import Hardware

GROUPS = ["model", "dataset", "lora", "quant", "trainer", "tracker", "experiment", "debug", "stage"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
# Linear layers of every Llama/Mistral/Qwen2 decoder the presets name.
LLAMA_LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}


# A Llama architecture in memory: the presets' Hub models are not reachable offline.
SMALL_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=1000)


def build_all(cfg, tmp_path):
    run_plan = plan.resolve(cfg, Hardware(), config=transformers.LlamaConfig(**SMALL_LLAMA))
    assert modeling.resolve_target_modules(cfg.lora, LLAMA_LINEAR) == list(run_plan.target_modules)
    if cfg.stage.name == "sft":
        args = training.sft_config(cfg.trainer, cfg.tracker, tmp_path, run_plan)
    else:
        from medchat.stages import stage_for
        from medchat.stages.preference import stage_plan

        args = stage_for(cfg.stage).trainer_config(cfg.trainer, cfg.tracker, tmp_path, stage_plan(run_plan, None))
    lora = modeling.lora_config(cfg.lora, run_plan.target_modules)
    bnb = modeling.quantization_config(run_plan.model.quant)
    return args, lora, bnb


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds_real_configs(group, option, tmp_path):
    # preference pairs and the preference stages only come together (validate refuses either alone)
    pairing = {("dataset", "preference"): ["stage=dpo"], ("stage", "dpo"): ["dataset=preference"],
               ("stage", "orpo"): ["dataset=preference"]}
    cfg = compose(f"{group}={option}", "dataset.path=rows.jsonl", *pairing.get((group, option), []))
    config_checks.validate(cfg)
    args, lora, bnb = build_all(cfg, tmp_path)
    if cfg.stage.name == "sft":
        assert isinstance(args, trl.SFTConfig)
    else:
        from trl.experimental.orpo import ORPOConfig

        assert isinstance(args, trl.DPOConfig if cfg.stage.name == "dpo" else ORPOConfig)
        assert args.beta == cfg.stage.beta
        assert cfg.stage.name == "orpo" or args.loss_type == list(cfg.stage.loss_type)
    assert args.learning_rate == cfg.trainer.learning_rate
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert isinstance(lora, peft.LoraConfig) and lora.r == cfg.lora.r and lora.lora_alpha == cfg.lora.lora_alpha
    assert type(lora.target_modules) in (list, set) and all(type(m) is str for m in lora.target_modules)
    if cfg.quant.mode == "none":
        assert bnb is None
    else:
        assert isinstance(bnb, transformers.BitsAndBytesConfig)
        assert bnb.load_in_4bit == (cfg.quant.mode in ("nf4", "fp4"))
        if cfg.quant.mode == "nf4":
            assert bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant


def test_experiments_reproduce_their_recipes():
    cfg = compose("experiment=mistral7b_healthcaremagic")
    assert (cfg.model.name_or_path, cfg.dataset.n, cfg.dataset.eval_size) == ("mistralai/Mistral-7B-v0.1", 5000, 0.1)
    assert (cfg.lora.r, cfg.lora.lora_alpha, cfg.lora.targets) == (32, 64, "all_linear_lm_head")
    assert (cfg.trainer.max_steps, cfg.trainer.save_steps) == (500, 25)
    targets = modeling.resolve_target_modules(cfg.lora, LLAMA_LINEAR)
    assert len(targets) == 7 and "lm_head" not in targets
    assert modeling.lora_config(cfg.lora, targets).modules_to_save == ["lm_head"]
    cfg = compose("experiment=llama3_2_3b_ai_medical_chatbot")
    assert (cfg.dataset.n, cfg.lora.r, cfg.lora.lora_alpha, cfg.trainer.learning_rate) == (1000, 8, 16, 2e-4)
    assert modeling.resolve_target_modules(cfg.lora, LLAMA_LINEAR) == ["q_proj", "v_proj"]


def test_trainer_keys_are_sftconfig_fields():
    """Config keys must not drift from the API they feed."""
    medchat_only = {"precision", "resume", "truncation", "fail_at_step", "checkpoint_every_n_layers", "memory_budget_gib",
                    # transformers.EarlyStoppingCallback's argument names, not TrainingArguments'
                    "early_stopping_patience", "early_stopping_threshold",
                    "fused_lora", "compile", "micro_batch",  # medchat.speed (issue 13)
                    "fixed_shape"}  # issue 23: the plan turns it into SFTConfig's pad_to_multiple_of
    ours = {f.name for f in dataclasses.fields(schema.TrainerConfig)} - medchat_only
    theirs = {f.name for f in dataclasses.fields(trl.SFTConfig)}
    assert ours <= theirs, ours - theirs
    lora_keys = {f.name for f in dataclasses.fields(schema.LoraConfig)} - {"targets"}
    assert lora_keys <= {f.name for f in dataclasses.fields(peft.LoraConfig)}


def test_unknown_key_fails_with_its_name():
    with pytest.raises(ConfigCompositionException) as e:
        compose("lora.rank=8")
    assert "lora.rank" in str(e.value.__cause__ or e.value)


def test_wrong_type_fails_with_its_name():
    with pytest.raises(ConfigCompositionException) as e:
        compose("trainer.learning_rate=fast")
    assert "trainer.learning_rate" in str(e.value.__cause__ or e.value)


@pytest.mark.parametrize(
    "override,key",
    [("lora.r=0", "lora.r"), ("lora.targets=everything", "lora.targets"), ("quant.mode=nf3", "quant.mode"),
     ("trainer.per_device_train_batch_size=0", "trainer.per_device_train_batch_size"),
     ("dataset.eval_size=-1", "dataset.eval_size"),
     # training's generation settings obey the same rules as evaluate.py's and chat's (GenerationSettings.check)
     ("eval.temperature=-1", "eval.temperature"), ("eval.top_p=0", "eval.top_p"),
     ("eval.max_new_tokens=0", "eval.max_new_tokens")],
)
def test_bad_values_fail_validation_naming_the_key(override, key):
    with pytest.raises(schema.ConfigError, match=key.replace(".", r"\.")):
        config_checks.validate(compose(override))


def test_unknown_optimizer_is_rejected_by_the_real_constructor(tmp_path):
    with pytest.raises(ValueError, match="bogus"):
        cfg = compose("trainer.optim=bogus")
        training.sft_config(cfg.trainer, cfg.tracker, tmp_path, plan.resolve(cfg, Hardware()))


def test_checkpointing_goes_under_the_names_the_installed_transformers_takes(tmp_path):
    """transformers 5.2x renamed gradient_checkpointing* to activation_checkpointing* (the old names warn
    FutureWarning); 5.17, on the GPU machine, has only the old ones (issue 22 item 3)."""
    import warnings

    class Transformers517Args:  # the old signature
        def __init__(self, gradient_checkpointing=False, gradient_checkpointing_kwargs=None):
            pass

    assert training.checkpointing_arguments(Transformers517Args, True, {"use_reentrant": False}) == {
        "gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    cfg = compose("trainer.gradient_checkpointing=true")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the installed transformers: no deprecation warning
        args = training.sft_config(cfg.trainer, cfg.tracker, tmp_path, plan.resolve(cfg, Hardware()))
    assert args.gradient_checkpointing is True and args.gradient_checkpointing_kwargs["use_reentrant"] is False
