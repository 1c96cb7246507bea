"""Chatting with a trained run: the terminal CLI, streaming, history, and clear errors for bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
from omegaconf import OmegaConf

from conftest import ROOT
from medchat.chat import ChatConfig, interactive, run
from medchat.config import ConfigError, GenerationSettings, TinyModelConfig
from medchat.formatting import prompt_ids
from medchat.inference import ChatModel
from medchat.run_models import AdapterMismatch
from medchat.runs import open_run

GREEDY = GenerationSettings(max_new_tokens=12, temperature=0, repetition_penalty=1.1)  # the chat CLI's defaults


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bot(trained_run):
    return ChatModel.load(trained_run)


def test_one_prompt_chat_prints_the_models_answer_alone_on_stdout(trained_run, bot, tmp_path):
    # One CLI run (a chat process costs ~10 s on CI's 2 cores): decoding=eval, the banner on stderr, the answer
    # alone on stdout. The banner and settings of every other decoding are checked in-process below.
    question = "I have had a sore throat, and it's worse at night: why?"  # commas and quotes pass Hydra's grammar
    proc = cli("-m", "medchat.chat", f"run_dir={trained_run}", f"prompt={question}", "max_new_tokens=12",
               "decoding=eval", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    evaluated = GenerationSettings(max_new_tokens=12, temperature=0, top_p=1.0, repetition_penalty=1.0)
    assert proc.stdout.strip() == bot.reply(bot.conversation([], question), evaluated)
    assert proc.stdout.strip()
    assert "[decoding: greedy, repetition penalty 1, at most 12 new tokens (as evaluate.py decodes)" in proc.stderr
    assert "Not medical advice" in proc.stderr and "Not medical advice" not in proc.stdout
    assert list(tmp_path.iterdir()) == []  # no Hydra output dir, log file or .hydra/ copy


def test_streamed_pieces_are_the_greedy_generation_up_to_eos(bot):
    import torch

    messages = bot.conversation([], "I get heartburn after dinner.")
    pieces = list(bot.stream(messages, GenerationSettings(max_new_tokens=40, temperature=0, repetition_penalty=1.0)))
    ids = torch.tensor([prompt_ids(bot.tokenizer, messages, "chat_template")])
    out = []

    def generate():  # off the main thread, as stream() does: on a busy 2-core machine OpenMP's main-thread team
        with torch.no_grad():  # made the same call ~15x slower (measured 9.9 s vs 0.6 s)
            out.append(bot.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=40,
                                          do_sample=False, use_cache=True, eos_token_id=bot.tokenizer.eos_token_id,
                                          pad_token_id=bot.tokenizer.pad_token_id))

    thread = threading.Thread(target=generate)
    thread.start()
    thread.join()
    new = out[0][0, ids.shape[1]:].tolist()
    assert "".join(pieces) == bot.tokenizer.decode(new, skip_special_tokens=True)
    assert len(pieces) > 1 or len(new) <= 2  # streamed as it was generated, not delivered at the end
    if bot.tokenizer.eos_token_id in new:  # generation stopped right at the end-of-turn token
        assert new.index(bot.tokenizer.eos_token_id) == len(new) - 1


def test_the_reused_static_cache_answers_exactly_as_the_dynamic_one_turn_after_turn(bot):
    """What chat does on a GPU (one StaticCache of max_context positions, reset between answers), forced on
    CPU: greedy answers equal the dynamic cache's for prompts of different lengths, one after another."""
    static = ChatModel(bot.model, bot.tokenizer, bot.prompt_format, bot.system_prompt, bot.max_context,
                       cache_implementation="static")
    settings = GenerationSettings(max_new_tokens=16, temperature=0)
    questions = ["I get heartburn after dinner.", "Why?", "My left knee has been swollen for three weeks, what now?"]
    for q in questions:
        messages = bot.conversation([], q)
        assert static.reply(messages, settings) == bot.reply(messages, settings), q
    assert static._cache is not None and bot._cache is None  # CPU's auto stays dynamic; one cache, reused


def test_conversation_carries_history_and_the_runs_system_prompt(bot):
    history = [{"role": "user", "content": "I have a cough."},
               {"role": "assistant", "content": [{"type": "text", "text": "How long for?"}]}]  # Gradio's form
    bot.system_prompt = "You are a careful doctor."
    try:
        messages = bot.conversation(history, "  Two weeks.  ")
    finally:
        bot.system_prompt = None
    assert messages == [{"role": "system", "content": "You are a careful doctor."},
                        {"role": "user", "content": "I have a cough."},
                        {"role": "assistant", "content": "How long for?"},
                        {"role": "user", "content": "Two weeks."}]
    text = bot.tokenizer.decode(bot.prompt_ids(messages, 8))
    assert text.startswith("<|im_start|>system\nYou are a careful doctor.") and text.endswith("<|im_start|>assistant\n")


def test_old_turns_are_dropped_to_fit_the_context_and_a_too_long_question_is_refused(bot):
    history = [{"role": "user", "content": "first question " * 20}, {"role": "assistant", "content": "first answer"},
               {"role": "user", "content": "second question"}, {"role": "assistant", "content": "second answer"}]
    messages = bot.conversation(history, "third question")
    full = len(bot.prompt_ids(messages, 0))
    keep = len(prompt_ids(bot.tokenizer, messages[2:], "chat_template"))
    bot.max_context = keep + 10
    try:
        trimmed = bot.tokenizer.decode(bot.prompt_ids(messages, 10))
        assert full > keep and "first" not in trimmed and "second question" in trimmed and "third" in trimmed
        with pytest.raises(ConfigError, match="does not fit the .*-token context"):
            bot.prompt_ids(bot.conversation([], "why " * 200), 10)
    finally:
        bot.max_context = 512


def test_interactive_session_keeps_history_until_reset(bot):
    seen = []
    original = bot.conversation
    bot.conversation = lambda history, q: seen.append([m["content"] for m in history]) or original(history, q)
    lines = iter(["I have a rash.", "", "It itches.", "/reset", "New question.", "/exit", "never read"])
    out = io.StringIO()
    try:
        interactive(bot, GenerationSettings(max_new_tokens=4, temperature=0), read=lambda _: next(lines), out=out)
    finally:
        bot.conversation = original
    assert [len(h) for h in seen] == [0, 2, 0]
    assert seen[1][0] == "I have a rash."
    assert out.getvalue().count("doctor> ") == 3
    assert next(lines) == "never read"


@pytest.mark.parametrize("overrides, message", [
    ({"run_dir": None}, "run_dir is not set"),
    ({"run_dir": "/no/such/run"}, "run_dir=/no/such/run does not exist"),
    ({"prompt": "   "}, "prompt is empty"),
    ({"temperature": -1.0}, "temperature must be >= 0"),
    ({"run_dir": "RUN/adapter"}, "is an adapter folder, not a run dir: pass its parent"),
])
def test_bad_input_is_one_clear_line_before_any_model_loads(trained_run, capsys, monkeypatch, overrides, message):
    monkeypatch.setattr(ChatModel, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    if str(overrides.get("run_dir")).startswith("RUN/"):
        overrides = {"run_dir": overrides["run_dir"].replace("RUN", str(trained_run))}
    cfg = OmegaConf.merge(OmegaConf.structured(ChatConfig(run_dir=str(trained_run), prompt="hi")), overrides)
    with pytest.raises(SystemExit) as exit_:
        run(cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("medchat.chat: error: ") and message in err and "Traceback" not in err


def test_a_run_without_an_adapter_says_so(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("adapter", "checkpoints"))
    with pytest.raises(FileNotFoundError, match=r"has no trained adapter: .*adapter_config.json is missing.*done"):
        open_run(run_dir)


def test_an_adapter_trained_on_another_base_is_refused(trained_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    adapter_cfg = run_dir / "adapter" / "adapter_config.json"
    data = json.loads(adapter_cfg.read_text())
    data["base_model_name_or_path"] = "meta-llama/Meta-Llama-3-8B-Instruct"
    adapter_cfg.write_text(json.dumps(data))
    monkeypatch.setattr("medchat.modeling.load_model", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(AdapterMismatch, match=r"trained on base model 'meta-llama/Meta-Llama-3-8B-Instruct', but the "
                                              r"base to load is '.*tiny-.*' \(from model.name_or_path in"):
        ChatModel.load(run_dir)


def test_an_explicit_base_of_another_shape_is_refused_by_name(trained_run):
    from medchat.tiny import tiny_model_dir

    other = tiny_model_dir(TinyModelConfig(hidden_size=64, intermediate_size=192, num_hidden_layers=2))
    with pytest.raises(AdapterMismatch, match=rf"does not fit base model '{other}': .* has shape"):
        ChatModel.load(trained_run, quant="none", base=str(other), check_base=False)


def test_the_system_prompt_is_the_one_training_recorded_not_a_guess_from_the_eval_rows(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    run = open_run(run_dir)
    split = json.loads((run_dir / "split.json").read_text())
    assert "train_system_prompt" in split  # training records it
    # every held-out row carrying one system text says nothing about what training used
    rows = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    for r in rows:
        r["messages"] = [{"role": "system", "content": "Eval-only text."}] + [m for m in r["messages"] if m["role"] != "system"]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run.system_prompt() == split["train_system_prompt"] != "Eval-only text."
    split["train_system_prompt"] = "You are a doctor answering patients."
    (run_dir / "split.json").write_text(json.dumps(split))
    assert run.system_prompt() == "You are a doctor answering patients."
    run.cfg.dataset.system_prompt = "Set in the config."
    assert run.system_prompt() == "Set in the config."


def test_banner_shows_the_decoding_and_decoding_eval_chats_as_evaluate_py_decodes(trained_run, bot):
    from medchat.chat import banner, settings_from

    def chat_cfg(**kw):
        return OmegaConf.structured(ChatConfig(run_dir=str(trained_run), max_new_tokens=12, **kw))

    sampled = settings_from(chat_cfg())  # the default
    assert banner(sampled, None) == ("[decoding: sampled: temperature 0.7, top_p 0.9, top_k off, repetition penalty "
                                     "1.1, at most 12 new tokens (evaluate.py decodes greedily, without penalty: "
                                     "decoding=eval); system prompt: none (the chat template's default)]")
    greedy = settings_from(chat_cfg(temperature=0))
    assert not greedy.do_sample and banner(greedy, None).startswith(
        "[decoding: greedy, repetition penalty 1.1, at most 12 new tokens (evaluate.py decodes greedily")
    evaluated = settings_from(chat_cfg(decoding="eval"))  # what the one-prompt CLI run chats with
    assert (evaluated.do_sample, evaluated.repetition_penalty, evaluated.max_new_tokens) == (False, 1.0, 12)
    assert banner(evaluated, "Be brief.") == ("[decoding: greedy, repetition penalty 1, at most 12 new tokens (as "
                                             "evaluate.py decodes); system prompt: 'Be brief.']")
