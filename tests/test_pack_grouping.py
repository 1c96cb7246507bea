"""launcher.pack grouping (medchat.sweeps.grouping): which sweep jobs share a process, on real composed configs."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import compose
from medchat.sweeps.grouping import ADAPTER_KEYS, differing_keys, group_jobs, why_alone


def plain(*overrides: str) -> dict:
    return OmegaConf.to_container(compose("trainer=debug", *overrides), resolve=True)


def test_adapter_side_keys_pack_and_group_shorthands_compare_as_values():
    # lora=r8 (a config group) and lora.r=8 with alpha 16 (dotted keys) are the same composed values
    jobs = [plain("lora.r=4", "trainer.learning_rate=1e-4"), plain("lora.r=8", "trainer.learning_rate=2e-4"),
            plain("lora=r8", "trainer.seed=3"), plain("lora.r=8", "lora.lora_alpha=16", "trainer.seed=3")]
    groups = group_jobs(jobs, pack=4)
    assert [g.members for g in groups] == [[0, 1, 2, 3]]
    assert set(differing_keys(jobs)) <= set(ADAPTER_KEYS)


def test_chunks_of_at_most_n_in_job_order():
    jobs = [plain(f"trainer.seed={s}") for s in range(5)]
    assert [g.members for g in group_jobs(jobs, pack=2)] == [[0, 1], [2, 3], [4]]
    assert "no other job" in group_jobs(jobs, pack=2)[-1].reason
    assert all(len(g.members) == 1 and g.reason == "launcher.pack=1" for g in group_jobs(jobs, pack=1))


def test_anything_else_splits_the_group():
    jobs = [plain("lora.r=4"), plain("lora.r=8"), plain("lora.r=4", "trainer.max_length=256"),
            plain("lora.r=8", "trainer.max_length=256"), plain("lora.r=4", "quant=none"),
            plain("lora.r=4", "trainer.per_device_train_batch_size=2")]
    assert [g.members for g in group_jobs(jobs, pack=8)] == [[0, 1], [2, 3], [4], [5]]


def test_jobs_the_packed_loop_does_not_serve_run_alone_with_the_reason():
    assert why_alone(plain()) is None
    assert "stage=dpo" in why_alone(plain("stage=dpo", "dataset=preference"))
    assert "int8" in why_alone(plain("quant=int8"))
    assert "eval.every_steps" in why_alone(plain("eval.every_steps=2"))
    assert "gpus_per_job" in why_alone(plain(), gpus_per_job=2)
    assert "group_by_length" in why_alone(plain("trainer.train_sampling_strategy=group_by_length"))
    jobs = [plain("lora.r=4"), plain("lora.r=8", "quant=int8"), plain("lora.r=8")]
    groups = group_jobs(jobs, pack=4)
    assert [g.members for g in groups] == [[0, 2], [1]] and "int8" in groups[1].reason
    # a job that will not run (refused, already done) takes no place in a group
    assert [g.members for g in group_jobs([jobs[0], None, jobs[2]], pack=4)] == [[0, 2]]


def test_pack_must_be_at_least_one_before_any_weights_load():
    from medchat.config import ConfigError
    from medchat.config_checks import validate

    with pytest.raises(ConfigError, match="launcher.pack must be >= 1"):
        validate(compose("trainer=debug", "launcher.pack=0"))


def test_pack_is_a_launching_key_not_part_of_a_jobs_identity():
    from medchat.sweeps.state import identity

    assert identity(["lora.r=4", "launcher.pack=4"]) == identity(["lora.r=4"])
