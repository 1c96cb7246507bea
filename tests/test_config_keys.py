"""Every config key is checked against its schema, however it was written: `+`, `++`, YAML, sweep axes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, compose
from medchat.config import Config, ConfigError
from medchat.config_checks import check_keys, unknown_keys

FAST = ["trainer=debug", "dataset.n=40", "dataset.eval_size=4", "tracker=none"]


@pytest.mark.parametrize("override,named,suggested", [
    ("+trainer.learning_rat=1", "trainer.learning_rat", "trainer.learning_rate"),
    ("++trainer.learning_rat=1", "trainer.learning_rat", "trainer.learning_rate"),
    ("+lora.rr=4", "lora.rr", "lora.r"),
    ("+model.tiny.hiden_size=8", "model.tiny.hiden_size", "model.tiny.hidden_size"),
    ("+dataset_n=4", "dataset_n", "dataset"),
])
def test_force_added_typo_fails_naming_the_key_and_the_closest(override, named, suggested):
    cfg = compose(override)  # Hydra composes it: `+`/`++` force-add past struct mode
    with pytest.raises(ConfigError) as e:
        check_keys(cfg, Config)
    assert named in str(e.value) and f"did you mean {suggested}?" in str(e.value)


def test_open_fields_take_new_keys_and_every_typo_is_listed():
    cfg = compose("+dataset.columns.question=q", "+extra.note=hi", "++extra.n=1")
    check_keys(cfg, Config)
    cfg = compose("+trainer.learning_rat=1", "+lora.alpha=3")
    assert len(unknown_keys(cfg, Config)) == 2


def test_train_refuses_a_force_added_typo_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="trainer.learning_rat .did you mean trainer.learning_rate"):
        from medchat.pipeline import train

        train(compose(*FAST, "+trainer.learning_rat=1"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _cli(script, *args, cwd=ROOT):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, *script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_train_py_with_plus_typo_exits_naming_the_key(tmp_path):
    out = _cli(["train.py"], *FAST, "+trainer.learning_rat=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode != 0
    assert "trainer.learning_rat (did you mean trainer.learning_rate?)" in out.stderr
    assert not (tmp_path / "run" / "status").exists()


def test_typo_in_an_experiment_yaml_fails_naming_the_key(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\ntrainer:\n  learning_rat: 1e-4\n")
    out = _cli(["train.py"], "--config-dir", str(tmp_path), "experiment=typo", "--cfg", "job")
    assert out.returncode != 0
    assert "experiment/typo" in out.stderr and "full_key: trainer.learning_rat" in out.stderr


def test_sweep_axis_naming_a_missing_key_fails_the_sweep_before_any_job_starts(tmp_path):
    """Jobs 0-1: a model neither local nor cached with the Hub off (HF_HUB_OFFLINE=1, conftest); jobs 2-3: a
    key that does not exist. Each is refused before it starts; the sweep ends with the launcher's summary, one
    error and log path per job, a non-zero exit and no traceback (issue 22)."""
    out = _cli(["train.py"], "-m", *FAST, "model.name_or_path=medchat-test/in-no-cache,tiny",
               "+trainer.learning_rat=1e-4,2e-4", f"hydra.sweep.dir={tmp_path}")
    console = out.stdout + out.stderr
    assert out.returncode != 0
    assert "trainer.learning_rat (did you mean trainer.learning_rate?)" in console
    assert console.count("model.name_or_path=medchat-test/in-no-cache is not a local directory and not in the "
                         "local Hugging Face cache") == 2 and "model.name_or_path=DIR" in console
    assert "4 jobs: 4 failed" in console and console.count("        log: ") == 4
    assert "Traceback" not in console and "HYDRA_FULL_ERROR" not in console
    assert console.rstrip().endswith("medchat launcher: 4 of 4 jobs failed (see above)"), console[-2000:]
    assert not list(tmp_path.glob("*/status")) and not list(tmp_path.glob("*/console.log"))


def test_sweep_file_naming_a_missing_key_fails(tmp_path):
    (tmp_path / "bad_sweep.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n      +lora.lora_alhpa: 4,8\n")
    out = _cli(["train.py"], "-m", "--config-dir", str(tmp_path), "--config-name", "bad_sweep", *FAST,
               f"hydra.sweep.dir={tmp_path / 's'}")
    assert out.returncode != 0
    assert "lora.lora_alhpa (did you mean lora.lora_alpha?)" in out.stdout + out.stderr


def test_evaluate_refuses_a_force_added_typo():
    from hydra import compose as hydra_compose, initialize_config_dir

    from medchat.config import register_configs
    from medchat.evaluation.config import register_evaluate_configs, validate

    register_configs()
    register_evaluate_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("evaluate", overrides=["run_dir=x", "+generation.max_new_token=3"])
    with pytest.raises(ConfigError, match="generation.max_new_token .did you mean generation.max_new_tokens"):
        validate(cfg)


@pytest.mark.parametrize("module,typo,suggested", [
    ("medchat.chat", "+max_new_token=3", "max_new_tokens"),
    ("medchat.export", "+merg=true", "merge"),
    ("medchat.app", "++prot=1", "port"),
])
def test_chat_export_app_refuse_a_force_added_typo(module, typo, suggested, tmp_path):
    out = _cli(["-m", module], f"run_dir={tmp_path}", typo)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"did you mean {suggested}?" in out.stderr


def test_a_run_dir_on_a_read_only_or_full_disk_fails_before_the_model_loads(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    import transformers

    from medchat.pipeline import train

    real_write = Path.write_text

    def refuse(self, *a, **k):
        if str(self).startswith(str(tmp_path / "run")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_write(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the model loaded before the run dir was checked"))
    with pytest.raises(OSError, match=f"run dir {tmp_path / 'run'} is not writable .Read-only file system"):
        train(compose(*FAST), tmp_path / "run")


def _check_repeatedly(run_dir, ready, failures) -> None:
    from medchat.attempt import Attempt

    attempt = Attempt(run_dir, None, False)
    ready.wait()  # both ranks start together, as they do after accelerate's launch
    for _ in range(2000):
        try:
            attempt.check_writable()
        except OSError as e:
            failures.put(str(e))
            return


def test_every_rank_checking_one_run_dir_at_once_never_fails(tmp_path):
    # Under DDP all ranks check the run dir together; a probe file shared between them once let one rank delete
    # the other's, which failed CI's 2-process launch. Two processes, 2,000 checks each, one dir.
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ready, failures = ctx.Barrier(2), ctx.Queue()
    ranks = [ctx.Process(target=_check_repeatedly, args=(tmp_path, ready, failures)) for _ in range(2)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=120)
    assert failures.empty(), failures.get()
    assert [p.exitcode for p in ranks] == [0, 0]
    assert list(tmp_path.iterdir()) == []  # no probe left behind


def test_a_write_cut_short_by_a_full_disk_leaves_the_old_file_whole(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from medchat.attempt import write_json

    target = tmp_path / "metrics.json"
    write_json(target, {"old": 1})
    real_write = Path.write_text

    def half_then_full(self, text, *a, **k):
        real_write(self, text[: len(text) // 2], *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        write_json(target, {"new": 2, "pad": "x" * 100})
    monkeypatch.undo()
    assert target.read_text() == '{\n  "old": 1\n}\n' and list(tmp_path.iterdir()) == [target]
