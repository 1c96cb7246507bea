"""GGUF export (python -m medchat.export format=gguf) read back by transformers' own GGUF loader.

The references are independent of medchat.gguf_export: the run's base plus its adapter through PEFT (the
merge the file must hold), transformers' GGUF reader (weights, config, tokenizer), gguf's own file reader
(metadata), the run's own chat template (what the Modelfile must render), and transformers' llama3 rope.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT
from medchat.export import ExportConfig, export, run

pytest.importorskip("gguf", reason="format=gguf writes with the gguf package (pip install gguf; the `real` extra)")
TEMPLATES = ROOT.parent / "shared" / "tokenizers" / "templates"
CHAT = [{"role": "system", "content": "You are a careful doctor."},
        {"role": "user", "content": "I have had a cough for 3 weeks, and it's worse at night."},
        {"role": "assistant", "content": "A cough that lasts over three weeks needs a check-up.\n  Any fever?"},
        {"role": "user", "content": "No fever — but I smoke 10 cigarettes a day."}]
IDS = torch.randint(4, 2000, (2, 24), generator=torch.Generator().manual_seed(0))
# Ollama's ChatML template (as in its qwen2 models), written out by hand: what the tiny run's Modelfile must hold
CHATML_TEMPLATE = ('{{ if .System }}<|im_start|>system\n{{ $.System }}<|im_end|>\n{{ end }}{{ range .Messages }}'
                   '{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
                   '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}<|im_end|>\n'
                   '{{ end }}{{ end }}<|im_start|>assistant\n')


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _from_gguf(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.gguf", dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def reference(trained_run):
    """(base + adapter through PEFT, unmerged; the same merged by PEFT): built without medchat's export code."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from medchat import modeling
    from medchat.runs import read_config

    path = modeling.model_path(read_config(trained_run).model)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                                             str(trained_run / "adapter")).eval()
    expected = _logits(with_adapter)
    return expected, with_adapter.merge_and_unload().eval()


@pytest.fixture(scope="module")
def f16_export(trained_run, tmp_path_factory):
    """The CLI's own path (Hydra app config -> run -> export), default type f16."""
    out = tmp_path_factory.mktemp("gguf") / "f16"
    run(OmegaConf.structured(ExportConfig(run_dir=str(trained_run), format="gguf", out=str(out))))
    return out


def test_f16_gguf_loads_with_transformers_and_holds_the_merged_weights(f16_export, reference):
    expected, merged = reference
    assert sorted(p.name for p in f16_export.iterdir()) == ["Modelfile", "medchat_export.json", "model.gguf",
                                                           "training_config.yaml"]
    loaded = _from_gguf(f16_export)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    # every weight is the merged one rounded to f16 (q/k included: llama.cpp's order undone by the reader)
    want = merged.state_dict()
    got = loaded.state_dict()
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor.half().float()), name
    # so the logits are the merged model's rounded to f16 (Module.half() works in place: on a copy)
    logits = _logits(loaded)
    torch.testing.assert_close(logits, _logits(copy.deepcopy(merged).half().float()), rtol=1e-4, atol=1e-4)
    err = (logits - expected).abs().max()
    assert err < 5e-3 * expected.abs().max(), err  # measured 8e-4 on logits of magnitude ~1.1


def test_q8_0_gguf_is_smaller_and_each_weight_within_its_blocks_rounding(trained_run, f16_export, reference, tmp_path):
    import gguf

    expected, merged = reference
    out = export(trained_run, format="gguf", gguf_type="q8_0", out=tmp_path / "q8")
    assert (out / "model.gguf").stat().st_size < 0.6 * (f16_export / "model.gguf").stat().st_size
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(out / "model.gguf").tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    loaded = _from_gguf(out)
    for name, tensor in merged.state_dict().items():
        got = loaded.state_dict()[name]
        if tensor.ndim == 1:
            assert torch.equal(got, tensor), name
            continue
        # q8_0: blocks of 32 values as int8 times a scale d = absmax/127 stored in f16 (relative rounding 2^-11):
        # |error| <= d/2 from rounding to an integer + 127 * d * 2^-11 from the scale's f16 rounding
        blocks, got_blocks = tensor.reshape(-1, 32), got.reshape(-1, 32)
        step = blocks.abs().amax(dim=1, keepdim=True) / 127
        assert ((got_blocks - blocks).abs() <= step * (0.5 + 127 / 2048) + 1e-7).all(), name
    err = (_logits(loaded) - expected).abs().max()
    assert err < 0.05 * expected.abs().max(), err  # measured 0.016 on logits of magnitude ~1.1


def test_the_gguf_tokenizer_encodes_a_multi_turn_chat_like_the_run(f16_export, trained_run):
    import gguf
    from transformers import AutoTokenizer

    from medchat.run_models import run_tokenizer
    from medchat.runs import open_run

    ours = run_tokenizer(open_run(trained_run))
    theirs = AutoTokenizer.from_pretrained(f16_export, gguf_file="model.gguf")
    assert theirs.chat_template == ours.chat_template
    assert (theirs.eos_token, theirs.pad_token, theirs.bos_token) == (ours.eos_token, ours.pad_token, ours.bos_token)
    for generation_prompt in (True, False):
        ids = [tok.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=generation_prompt,
                                       return_dict=True)["input_ids"] for tok in (ours, theirs)]
        assert list(ids[0]) == list(ids[1]) and len(ids[0]) > 60
    text = "Fever 38.5°C since Monday — take 2×500 mg?  <|im_end|>"
    assert theirs(text)["input_ids"] == ours(text)["input_ids"]
    # what llama.cpp reads: gguf's own reader on the metadata
    fields = gguf.GGUFReader(f16_export / "model.gguf").fields

    def field(key):
        f = fields[key]
        return f.contents()

    assert field("general.architecture") == "llama"
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "gpt-2"
    assert field("tokenizer.ggml.eos_token_id") == ours.eos_token_id == ours.convert_tokens_to_ids("<|im_end|>")
    assert field("tokenizer.ggml.padding_token_id") == ours.pad_token_id
    assert field("tokenizer.chat_template") == ours.chat_template
    assert field("tokenizer.ggml.tokens")[:4] == ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert field("tokenizer.ggml.token_type")[:5] == [3, 3, 3, 3, 1]  # control tokens, then normal ones


def test_the_modelfile_holds_the_chatml_template_stop_tokens_and_the_disclaimer(f16_export):
    from medchat.inference import DISCLAIMER

    text = (f16_export / "Modelfile").read_text()
    assert "\nFROM ./model.gguf\n" in text
    assert f'\nTEMPLATE """{CHATML_TEMPLATE}"""\n' in text
    stops = [line for line in text.splitlines() if line.startswith("PARAMETER stop")]
    assert stops == ['PARAMETER stop "<|endoftext|>"', 'PARAMETER stop "<|im_end|>"']
    assert f'\nSYSTEM """{DISCLAIMER}"""\n' in text
    record = json.loads((f16_export / "medchat_export.json").read_text())
    assert record["type"] == "f16" and record["chat_format"] == "ChatML" and record["warnings"] == []


def _tiny_tokenizer(template: str | None, bos: str | None, eos: str):
    from medchat.config import ModelConfig, TinyModelConfig
    from medchat.formatting import load_chat_template
    from medchat.modeling import load_tokenizer
    from medchat.tiny import tiny_model_dir

    tok = load_tokenizer(ModelConfig(chat_template="chatml"), path=str(tiny_model_dir(TinyModelConfig())))
    if template is not None:
        tok.chat_template = (load_chat_template(template) if template in ("inst", "chatml")
                             else (TEMPLATES / template).read_text())
    tok.eos_token = eos
    if bos:
        tok.bos_token = bos
    return tok


@pytest.mark.parametrize("template, bos, eos, family, add_bos", [
    ("inst", "<s>", "</s>", "Mistral [INST]", True),
    ("chatml", "<|im_start|>", "<|im_end|>", "ChatML", False),  # SmolLM2: its bos is ChatML's own first token
    ("qwen2-instruct.jinja", None, "<|im_end|>", "ChatML", False),
    ("meta-llama-3-8b-instruct.jinja", "<|begin_of_text|>", "<|eot_id|>", "Llama-3", True),
    ("llama-2-chat.jinja", "<s>", "</s>", "Llama-2 [INST] <<SYS>>", True),
])
def test_each_familys_modelfile_renders_a_chat_as_its_own_template_does(template, bos, eos, family, add_bos):
    """The Modelfile's format, rendered, equals the family's own jinja template on a multi-turn chat with a
    system prompt (less a leading bos that is not part of the format: llama.cpp adds it, add_bos_token)."""
    from medchat import modelfile

    if template.endswith(".jinja") and not TEMPLATES.is_dir():
        pytest.skip(f"{TEMPLATES} not present (../shared)")
    tok = _tiny_tokenizer(template, bos, eos)
    fmt, differs, adds = modelfile.check_chat(tok, "chat_template")
    assert (fmt.name, differs, adds) == (family, None, add_bos)
    theirs = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert modelfile.render(fmt, CHAT[0]["content"], CHAT[1:]) == (theirs[len(bos):] if add_bos else theirs)
    assert eos in modelfile.go_template(fmt) and "{{ .Content }}" in modelfile.go_template(fmt)


@pytest.mark.parametrize("arch", ["Qwen2ForCausalLM", "MistralForCausalLM"])
def test_qwen2_and_mistral_shapes_round_trip_through_transformers(arch, tmp_path):
    """A random model of each other supported family (Qwen2: q/k/v biases, tied embeddings, no permutation;
    Mistral: written as llama.cpp's llama) with the tiny tokenizer, read back by transformers."""
    import transformers

    from medchat import gguf_export

    tok = _tiny_tokenizer(None, None, "<|im_end|>")
    shape = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if arch == "Qwen2ForCausalLM":
        config = transformers.Qwen2Config(**shape, tie_word_embeddings=True)
    else:
        config = transformers.MistralConfig(**shape, sliding_window=None, tie_word_embeddings=False)
    config.architectures = [arch]
    torch.manual_seed(0)
    model = getattr(transformers, arch)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())  # f16-exact weights: the round trip must then be exact
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)  # non-trivial norms and biases
    plan = gguf_export.check(config, tok, "f16")
    gguf_export.write(model, tok, tmp_path / "model.gguf", plan)
    loaded = _from_gguf(tmp_path)
    if arch == "Qwen2ForCausalLM":
        assert loaded.config.tie_word_embeddings and loaded.model.layers[0].self_attn.q_proj.bias is not None
    torch.testing.assert_close(_logits(loaded), _logits(model), rtol=1e-5, atol=1e-5)


def test_llama3_rope_factors_match_transformers_llama3_rope():
    import transformers
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from medchat import gguf_export

    config = transformers.LlamaConfig(hidden_size=256, num_attention_heads=4, max_position_embeddings=131072,
                                      rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 8192})
    factors, linear = gguf_export._rope(config)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    dim = 64
    plain = 1.0 / (500000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    torch.testing.assert_close(plain / torch.tensor(factors), scaled, rtol=1e-5, atol=0)
    assert linear is None and min(factors) == 1.0 and max(factors) == 32.0


@pytest.mark.parametrize("overrides, message", [
    ({"gguf": {"type": "q4_k"}}, "gguf.type='q4_k' is not one of f16, q8_0"),
    ({"format": "onnx"}, "format='onnx' is not one of hf, gguf"),
    ({"run_dir": "/nonexistent/run"}, "run_dir=/nonexistent/run does not exist"),
    ({"gguf": {"typ": "f16"}}, "gguf.typ (did you mean gguf.type?)"),
])
def test_user_errors_name_the_key_before_any_weight_is_read(trained_run, tmp_path, monkeypatch, capsys,
                                                            overrides, message):
    from medchat import run_models

    monkeypatch.setattr(run_models, "load_for_export", lambda *a, **k: pytest.fail("weights loaded before the check"))
    cfg = OmegaConf.merge(OmegaConf.to_container(OmegaConf.structured(ExportConfig(
        run_dir=str(trained_run), format="gguf", out=str(tmp_path / "g")))), overrides)
    with pytest.raises(SystemExit):
        run(cfg)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_an_unsupported_architecture_is_refused_by_name_before_any_weight_is_read(trained_run, tmp_path,
                                                                                  monkeypatch):
    import transformers

    from medchat import modeling, run_models
    from medchat.config import ConfigError

    monkeypatch.setattr(run_models, "load_for_export", lambda *a, **k: pytest.fail("weights loaded before the check"))
    monkeypatch.setattr(run_models, "check_base", lambda *a, **k: "some/gpt2")  # the adapter-vs-base check is not tested here

    def gpt2(*args, **kwargs):
        config = transformers.GPT2Config()
        config.architectures = ["GPT2LMHeadModel"]
        return config

    monkeypatch.setattr(modeling, "model_config", gpt2)
    with pytest.raises(ConfigError, match="architecture 'GPT2LMHeadModel' has no GGUF writer in medchat; supported: "
                                          "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"):
        export(trained_run, format="gguf", out=tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_a_sentencepiece_style_tokenizer_is_written_for_llama_cpps_spm_and_read_back(tmp_path):
    """Mistral-7B's tokenizer (../shared): BPE with byte fallback is written as llama.cpp's `llama` model (tokens,
    scores, byte/control/unknown types, space prefix). transformers' reader encodes text to the same ids."""
    import gguf
    import transformers
    from transformers import AutoTokenizer

    from medchat import gguf_export
    from medchat.formatting import load_chat_template

    folder = TEMPLATES.parent / "mistral-7b-v0.1"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present (../shared)")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = load_chat_template("inst")
    config = transformers.MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    config.architectures = ["MistralForCausalLM"]
    plan = gguf_export.check(config, tok, "f16")
    assert (plan.tokenizer_model, plan.pre, plan.chat.name, plan.add_bos, plan.warnings) == (
        "llama", None, "Mistral [INST]", True, [])
    gguf_export.write(transformers.MistralForCausalLM(config), tok, tmp_path / "model.gguf", plan)
    fields = gguf.GGUFReader(tmp_path / "model.gguf").fields
    types = fields["tokenizer.ggml.token_type"].contents()
    assert types[:4] == [2, 3, 3, 6] and types.count(6) == 256  # <unk>, <s>, </s>, then the 256 byte tokens
    assert fields["tokenizer.ggml.add_space_prefix"].contents() is True
    back = AutoTokenizer.from_pretrained(tmp_path, gguf_file="model.gguf")
    for text in ("I have had a cough for 3 weeks, and it's worse at night.", " leading space",
                 "Fever 38.5°C  twice\nnewline 😷 — ok"):
        assert back(text)["input_ids"] == tok(text)["input_ids"], text
