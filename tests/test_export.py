"""Merging, exporting with a model card, and pushing (against a stand-in for the Hub's API)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from medchat import export as export_mod
from medchat.export import ExportConfig, export, merge_adapter, run

EVAL_METRICS = {  # the format evaluate.py writes (see COMMON run dir contract), numbers made up for the card test
    "rows": 8, "split": "eval.jsonl", "generation": {"max_new_tokens": 128, "do_sample": False},
    "models": {"adapter": {"bleu": 3.21, "rouge1": 0.2468, "rouge2": 0.0531, "rougeL": 0.1357, "meteor": None,
                           "bertscore_f1": 0.8123, "perplexity": 123.4, "mean_answer_words": 41.5, "eos_rate": 0.875},
               "base": {"bleu": 0.12, "rouge1": 0.0456, "rouge2": 0.0, "rougeL": 0.0345, "meteor": None,
                        "bertscore_f1": 0.7012, "perplexity": 2345.6, "mean_answer_words": 96.0, "eos_rate": 0.0}},
    "unavailable": {"meteor": "WordNet is not installed"},
}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _base_plus_adapter(run_dir, dtype):
    from peft import PeftModel  # built here without medchat.runs: the reference the export is compared with
    from transformers import AutoModelForCausalLM

    from medchat import modeling
    from medchat.runs import read_config

    path = modeling.model_path(read_config(run_dir).model)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return (AutoModelForCausalLM.from_pretrained(path, dtype=dtype),
            PeftModel.from_pretrained(base, str(run_dir / "adapter")).eval())


def test_merged_model_equals_base_plus_adapter_and_loads_with_transformers_alone(trained_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = torch.randint(4, 2000, (2, 24), generator=torch.Generator().manual_seed(0))
    plain_base, with_adapter = _base_plus_adapter(trained_run, torch.float32)
    expected = _logits(with_adapter, ids)
    assert (expected - _logits(plain_base, ids)).abs().max() > 1e-2  # the adapter changes the answer at all

    merged, _ = merge_adapter(trained_run, dtype="float32")
    torch.testing.assert_close(_logits(merged, ids), expected, rtol=1e-4, atol=1e-4)

    # The default writes 16-bit weights; the folder needs nothing but transformers.
    out = export(trained_run, merge=True, out=tmp_path / "merged")
    assert json.loads((out / "config.json").read_text())["dtype"] in ("bfloat16", "float16")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    assert reloaded.dtype in (torch.bfloat16, torch.float16) and not hasattr(reloaded, "peft_config")
    err = (_logits(reloaded, ids) - expected).abs()
    assert err.max() < 0.05 * expected.abs().max(), err.max()  # 16-bit rounding only
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    eos = reloaded.generation_config.eos_token_id
    assert tokenizer.eos_token_id in (eos if isinstance(eos, list) else [eos])
    card = (out / "README.md").read_text()
    assert "saved in bfloat16" in card or "saved in float16" in card
    assert "trained on the 4-bit (nf4) base; merged into the" in card
    assert (out / "training_config.yaml").is_file()


def test_adapter_export_has_a_card_with_the_runs_numbers_and_the_evaluation_table(trained_run, tmp_path):
    from huggingface_hub import ModelCard

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    full = run_dir / "eval" / "heldout-base+adapter"
    full.mkdir(parents=True)
    (full / "metrics.json").write_text(json.dumps(EVAL_METRICS))
    # a later `limit=2` smoke run keeps its own folder, and the card never quotes it
    smoke = run_dir / "eval" / "heldout-adapter-limit2"
    smoke.mkdir()
    (smoke / "metrics.json").write_text(json.dumps({**EVAL_METRICS, "rows": 2, "limit": 2, "models": {
        "adapter": {**EVAL_METRICS["models"]["adapter"], "bleu": 99.9}}}))
    os.utime(smoke / "metrics.json", (time.time() + 5, time.time() + 5))

    out = export(run_dir, repo_id="someone/medchat-tiny")
    assert out == run_dir / "export" / "adapter"
    files = sorted(p.name for p in out.iterdir())
    assert "adapter_model.safetensors" in files and "tokenizer.json" in files and "training_args.bin" not in files
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "medical" in card.data.tags and "qlora" in card.data.tags
    text = card.text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    assert text.count("Not medical advice") == 2
    assert "| fine-tuned (adapter) | 3.21 | 0.2468 | 0.0531 | 0.1357 | n/a | 0.8123 | 123.4 | 41.5 | 0.875 |" in text
    assert "99.9" not in text and "8 held-out" in text
    assert "| base model | 0.12 | 0.0456 |" in text and "`meteor` not computed: WordNet is not installed" in text
    assert f"| eval loss after training | {metrics['eval_loss_after']:.4g} |" in text
    assert f"| train | {split['counts']['train']} |" in text and split["fingerprint"] in text
    assert "| LoRA rank / alpha / dropout | 16 / 32 / 0.05 |" in text and "q_proj" in text
    assert "Intended use" in text and "Limitations" in text and "Out-of-scope" in text
    cfg = OmegaConf.create((out / "training_config.yaml").read_text())
    assert cfg.lora.r == 16 and cfg.trainer.max_steps == 4

    # Without evaluate.py's file the card says so instead of showing a table.
    shutil.rmtree(full)
    out = export(run_dir, overwrite=True)
    assert "No generation metrics" in (out / "README.md").read_text()


def test_offline_export_says_what_it_would_push_and_refuses_to_overwrite(trained_run, tmp_path, capsys):
    cfg = OmegaConf.structured(ExportConfig(run_dir=str(trained_run), out=str(tmp_path / "a"), repo_id="me/x"))
    run(cfg)
    printed = capsys.readouterr().out
    assert "adapter_model.safetensors" in printed and "README.md" in printed
    assert "not pushed (push=false): push=true would upload these files to the Hub model repo me/x (private)" in printed
    with pytest.raises(SystemExit):
        run(cfg)
    assert "already exists and is not empty; pass overwrite=true" in capsys.readouterr().err


class FakeHub:
    calls: list = []

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, repo_id, **kwargs):
        FakeHub.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, folder_path, repo_id, **kwargs):
        FakeHub.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        return type("Commit", (), {"commit_url": f"https://hub.invalid/{repo_id}/commit/1"})()


def test_push_uploads_the_folder_with_huggingface_hub(trained_run, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    FakeHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    run(OmegaConf.structured(ExportConfig(run_dir=str(trained_run), out=str(tmp_path / "a"), push=True,
                                          repo_id="me/medchat-tiny", private=False)))
    assert FakeHub.calls[0] == ("create_repo", "me/medchat-tiny", {"repo_type": "model", "private": False,
                                                                    "exist_ok": True})
    assert FakeHub.calls[1][0] == "upload_folder" and "README.md" in FakeHub.calls[1][2]
    assert "pushed to me/medchat-tiny (public): https://hub.invalid/me/medchat-tiny/commit/1" in capsys.readouterr().out


@pytest.mark.parametrize("repo_id, env, message", [
    (None, {}, "push=true needs repo_id=<user or org>/<name>, got None"),
    ("no-slash", {}, "push=true needs repo_id=<user or org>/<name>, got 'no-slash'"),
    ("me/x", {"HF_HUB_OFFLINE": "1"}, "push=true but HF_HUB_OFFLINE is set"),
    ("me/x", {"HF_TOKEN": None}, "push=true needs a Hugging Face token"),
])
def test_push_needs_a_repo_id_a_token_and_the_network_before_anything_is_written(
        trained_run, tmp_path, monkeypatch, capsys, repo_id, env, message):
    monkeypatch.setattr(export_mod, "export", lambda *a, **k: pytest.fail("exported before the push was checked"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    for key, value in env.items():
        monkeypatch.setenv(key, value) if value else monkeypatch.delenv(key)
    if "HF_TOKEN" in env:
        monkeypatch.setattr("huggingface_hub.get_token", lambda: None)  # and no token file either
    with pytest.raises(SystemExit):
        run(OmegaConf.structured(ExportConfig(run_dir=str(trained_run), out=str(tmp_path / "a"), push=True,
                                              repo_id=repo_id)))
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_an_adapter_of_another_base_is_refused_before_anything_is_written(trained_run, tmp_path):
    from medchat.run_models import AdapterMismatch

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    adapter_cfg = run_dir / "adapter" / "adapter_config.json"
    adapter_cfg.write_text(json.dumps({**json.loads(adapter_cfg.read_text()), "base_model_name_or_path": "org/other"}))
    for merge in (False, True):
        with pytest.raises(AdapterMismatch, match="trained on base model 'org/other'"):
            export(run_dir, merge=merge)
    assert not (run_dir / "export").exists()


def _snippet(card_text: str) -> str:
    start = card_text.index("```python\n") + len("```python\n")
    return card_text[start: card_text.index("```", start)]


@pytest.mark.parametrize("merge", [True, False])
def test_the_cards_usage_snippet_runs_as_written(trained_run, tmp_path, tiny_dir, merge, capsys):
    out = export(trained_run, merge=merge, out=tmp_path / "export", dtype="float32")
    code = _snippet((out / "README.md").read_text()).replace("PATH/TO/THIS/FOLDER", str(out))
    assert "generate(**inputs" in code
    if not merge:  # the tiny base is built by medchat, not on the Hub: point the snippet at its folder
        assert 'from_pretrained("tiny")' in code
        code = code.replace('from_pretrained("tiny")', f'from_pretrained("{tiny_dir}")')
    exec(compile(code, "model-card-snippet", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.strip(), "the snippet printed no answer"
