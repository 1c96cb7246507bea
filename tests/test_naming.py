"""W&B run names of sweep jobs: what differs between the jobs, short and unique."""

from medchat.sweeps.naming import single_name, sweep_names


def test_names_come_from_the_keys_that_differ():
    jobs = [["lora.r=8", "trainer.learning_rate=1e-4", "lora.targets=all_linear", "trainer=debug"],
            ["lora.r=16", "trainer.learning_rate=0.0002", "lora.targets=qv", "trainer=debug"],
            ["lora.r=8", "trainer.learning_rate=2.0e-4", "lora.targets=qv", "trainer=debug"]]
    assert sweep_names(jobs) == ["r8-lr1e-4-all_linear", "r16-lr2e-4-qv", "r8-lr2e-4-qv"]


def test_group_choices_are_named_by_value_and_clashes_get_the_job_number():
    assert sweep_names([["model=mistral7b", "lora=r32"], ["model=llama3_8b_instruct", "lora=r32"]]) == \
        ["mistral7b", "llama3_8b_instruct"]
    # 1e-4 and 0.0001 are the same value written twice: the names clash, the job numbers part them
    assert sweep_names([["trainer.learning_rate=1e-4"], ["trainer.learning_rate=0.0001"]], [3, 7]) == \
        ["lr1e-4-3", "lr1e-4-7"]


def test_a_key_set_in_only_some_jobs_is_named():
    # the job without the key keeps the defaults: it is named so
    assert sweep_names([["lora.r=8"], ["lora.r=8", "trainer.seed=2"]]) == ["default", "seed2"]


def test_single_job_names_leave_out_paths_and_tracker_keys():
    assert single_name(["lora.r=4", "tracker.project=x", "hydra.run.dir=/tmp/a"], "fallback") == "r4"
    assert single_name([], "2026-11-22_10-00-00") == "2026-11-22_10-00-00"
