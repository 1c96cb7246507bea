"""Shared fixtures: composed configs, the offline tiny model, and the real data in ../shared (if present)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"
# Synthetic multi-turn doctor-patient dialogues (messages schema): the multi-turn coverage the real default
# sample (single-turn MedQuAD pairs) lacks. See tests/fixtures/README.md.
DIALOGUES = ROOT / "tests" / "fixtures" / "dialogues.jsonl"

# Tests never reach W&B's servers, and build their tiny model in their own cache.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _medchat_cache(tmp_path_factory):
    os.environ["MEDCHAT_CACHE"] = str(tmp_path_factory.mktemp("medchat-cache"))


def compose(*overrides: str, return_hydra_config: bool = False):
    from hydra import compose as hydra_compose, initialize_config_dir

    from medchat.config import register_configs
    from medchat.rundir import register_resolvers

    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def shared(relpath: str) -> Path:
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only beside a developer's checkout)")
    return path


@pytest.fixture(scope="session")
def tiny_dir():
    from medchat.config import TinyModelConfig
    from medchat.tiny import tiny_model_dir

    return tiny_model_dir(TinyModelConfig())


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_dir):
    from medchat.config import ModelConfig
    from medchat.modeling import load_tokenizer

    return load_tokenizer(ModelConfig(chat_template="chatml"), path=str(tiny_dir))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A finished QLoRA run of the tiny model (4 steps): what chat, export and the app are tested on. Read-only:
    a test that needs to change it works on a copy."""
    from medchat.pipeline import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(compose("trainer=debug", "trainer.max_steps=4", "trainer.eval_strategy=no", "dataset.n=40",
                  "dataset.eval_size=4", "tracker=none"), run)
    return run
