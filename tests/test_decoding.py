"""Issue 21 item 5: one source of decoding settings. evaluate.py, chat, make_pairs and the training-time
generation callback hand model.generate the same configuration for the same settings, and a model whose own
generation_config says otherwise (sampling, top_k=7, temperature 0.1, no_repeat_ngram_size) changes nothing.

What is compared is what generation really ran with: the GenerationConfig transformers resolved inside
model.generate (its `_prepare_generation_config`, where the model's own config would be merged in), and for
greedy decoding the tokens themselves against an argmax loop written here."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from medchat import modeling
from medchat.config import EvalConfig, GenerationSettings, ModelConfig, QuantConfig
from medchat.formatting import prompt_ids, stop_token_ids
from medchat.hardware import Hardware
from medchat.plan import model_plan

QUESTION = [{"role": "user", "content": "I have had a headache for three days. What should I do?"}]
# what transformers resolves and generation reads; eos/pad are the stop ids, the rest decoding choices
FIELDS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "num_beams", "repetition_penalty",
          "no_repeat_ngram_size", "min_new_tokens", "eos_token_id", "pad_token_id")
GREEDY = GenerationSettings(max_new_tokens=8, do_sample=False, repetition_penalty=1.0)
SAMPLED = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.7, top_p=0.9, top_k=0,
                             repetition_penalty=1.0)


def _model(tiny_dir, tiny_tokenizer, own_config: GenerationConfig | None = None):
    torch.manual_seed(0)
    m = modeling.load_model(model_plan(ModelConfig(dtype="float32"), QuantConfig(mode="none"), Hardware(),
                                       str(tiny_dir))).eval()
    eos = stop_token_ids(tiny_tokenizer)  # the same stop ids either way: those may come from the model
    m.generation_config = own_config or GenerationConfig(eos_token_id=eos, pad_token_id=tiny_tokenizer.pad_token_id)
    return m


def _pushy_config(tiny_tokenizer) -> GenerationConfig:
    """An instruct model's own generation_config with opinions medchat must not inherit."""
    return GenerationConfig(do_sample=True, top_k=7, temperature=0.1, top_p=0.5, repetition_penalty=1.5,
                            no_repeat_ngram_size=1, min_new_tokens=3, eos_token_id=stop_token_ids(tiny_tokenizer),
                            pad_token_id=tiny_tokenizer.pad_token_id)


class Resolved:
    """Records the configuration transformers resolved for every model.generate call on `model`."""

    def __init__(self, model):
        self.calls: list[dict] = []
        original = model._prepare_generation_config

        def spy(generation_config, **kwargs):
            config, model_kwargs = original(generation_config, **kwargs)
            self.calls.append({f: getattr(config, f) for f in FIELDS})
            return config, model_kwargs

        model._prepare_generation_config = spy


def _via_evaluation(model, tokenizer, settings):
    from medchat.evaluation.generation import generate

    generate(model, tokenizer, [prompt_ids(tokenizer, QUESTION, "chat_template")], settings, batch_size=1)


def _via_chat(model, tokenizer, settings):
    from medchat.inference import ChatModel

    ChatModel(model, tokenizer, "chat_template", None, 256).reply(QUESTION[:-1] + QUESTION, settings)


def _via_callback(model, tokenizer, settings, tmp_path):
    from medchat.evaluation.callback import GenerationCallback

    fields = {k: getattr(settings, k) for k in GenerationSettings.__dataclass_fields__}
    cfg = EvalConfig(**fields, every_steps=1, num_samples=1, metrics=["bleu"])
    records = [{"messages": QUESTION + [{"role": "assistant", "content": "Rest and drink water."}]}]
    GenerationCallback(cfg, tokenizer, records, "chat_template", tmp_path, "none").log_generations(model, 1)


def _via_make_pairs(model, tokenizer, settings):
    from medchat.evaluation.generation import GenerationStats
    from medchat.make_pairs import answers, parse

    assert settings == GREEDY  # make_pairs decodes greedily, without penalty: its one setting
    s = parse(["run_dir=r", "out=o", f"max_new_tokens={settings.max_new_tokens}",
               f"regenerate_max_new_tokens={settings.max_new_tokens}"])
    answers(model, tokenizer, [prompt_ids(tokenizer, QUESTION, "chat_template")], s, GenerationStats(), {})


def _resolved(model, tokenizer, settings, tmp_path, paths) -> dict:
    spy = Resolved(model)
    out = {}
    for name in paths:
        before = len(spy.calls)
        if name == "callback":
            _via_callback(model, tokenizer, settings, tmp_path)
        else:
            {"evaluation": _via_evaluation, "chat": _via_chat, "make_pairs": _via_make_pairs}[name](
                model, tokenizer, settings)
        assert len(spy.calls) == before + 1, name
        out[name] = spy.calls[-1]
    return out


@pytest.mark.parametrize("settings,paths", [
    (GREEDY, ("evaluation", "chat", "callback", "make_pairs")),
    (SAMPLED, ("evaluation", "chat", "callback")),
], ids=["greedy", "sampled"])
def test_every_path_generates_with_the_same_config_whatever_the_models_own(tiny_dir, tiny_tokenizer, tmp_path,
                                                                           settings, paths):
    plain = _resolved(_model(tiny_dir, tiny_tokenizer), tiny_tokenizer, settings, tmp_path, paths)
    pushy = _resolved(_model(tiny_dir, tiny_tokenizer, _pushy_config(tiny_tokenizer)), tiny_tokenizer, settings,
                      tmp_path, paths)
    first = plain["evaluation"]
    assert all(c == first for c in plain.values()), plain
    assert all(c == first for c in pushy.values()), pushy  # the model's own config changed nothing
    # the values are the settings' (independent of medchat.decoding: written out here)
    assert first["max_new_tokens"] == 8 and first["do_sample"] is settings.do_sample
    assert first["num_beams"] == 1 and first["repetition_penalty"] == 1.0
    assert first["no_repeat_ngram_size"] == 0 and first["min_new_tokens"] is None
    assert sorted(first["eos_token_id"]) == stop_token_ids(tiny_tokenizer)
    if settings.do_sample:
        assert (first["temperature"], first["top_p"], first["top_k"]) == (0.7, 0.9, 0)  # top_k explicit: off


def test_greedy_tokens_equal_an_argmax_loop_on_a_model_that_asks_for_sampling(tiny_dir, tiny_tokenizer):
    from medchat.evaluation.generation import generate

    model = _model(tiny_dir, tiny_tokenizer, _pushy_config(tiny_tokenizer))
    prompt = prompt_ids(tiny_tokenizer, QUESTION, "chat_template")
    ids, expected = torch.tensor([prompt]), []
    stops = set(stop_token_ids(tiny_tokenizer))
    with torch.no_grad():
        for _ in range(16):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            if nxt in stops:
                break
            expected.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    # the model's no_repeat_ngram_size=1 would forbid this repeat (and its min_new_tokens an early stop)
    assert len(set(expected)) < len(expected), "precondition: the greedy answer repeats a token"
    [got] = generate(model, tiny_tokenizer, [prompt], GenerationSettings(max_new_tokens=16), batch_size=1)
    assert got.token_ids == expected
    assert model.generation_config.top_k == 7  # restored after generation
