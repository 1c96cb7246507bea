"""Generation, perplexity and MCQ scoring on the tiny model, each against an independent computation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import DIALOGUES, shared
from medchat import modeling
from medchat.hardware import Hardware
from medchat.plan import model_plan
from medchat.config import GenerationSettings, ModelConfig, QuantConfig
from medchat.data import DataError
from medchat.evaluation import mcq, mcq_data
from medchat.evaluation.generation import _cut, generate
from medchat.formatting import stop_token_ids
from medchat.evaluation.perplexity import doctor_nll, perplexity
from medchat.formatting import prompt_ids, tokenize_conversation



@pytest.fixture(scope="module")
def model(tiny_dir):
    torch.manual_seed(0)
    m = modeling.load_model(model_plan(ModelConfig(dtype="float32"), QuantConfig(mode="none"), Hardware(),
                                        str(tiny_dir)))
    return m.eval()


@pytest.fixture(scope="module")
def conversations():
    lines = DIALOGUES.read_text().splitlines()
    rows = [json.loads(line)["messages"] for line in lines[:40]]
    return [r for r in rows if len(r) == 2][:6] + [r for r in rows if len(r) > 2][:2]


def test_batched_greedy_equals_one_prompt_at_a_time(model, tiny_tokenizer, conversations):
    prompts = [prompt_ids(tiny_tokenizer, c[:-1], "chat_template") for c in conversations]
    assert len({len(p) for p in prompts}) > 3  # different lengths, so left padding is exercised
    one = [generate(model, tiny_tokenizer, [p], GenerationSettings(max_new_tokens=24), batch_size=1)[0] for p in prompts]
    batched = generate(model, tiny_tokenizer, prompts, GenerationSettings(max_new_tokens=24), batch_size=len(prompts))
    assert [g.token_ids for g in batched] == [g.token_ids for g in one]
    assert [g.text for g in batched] == [g.text for g in one]
    assert all(g.token_ids for g in one)  # something was generated


def test_sampling_is_seeded(model, tiny_tokenizer, conversations):
    prompts = [prompt_ids(tiny_tokenizer, c[:-1], "chat_template") for c in conversations[:3]]
    sampled = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=0.7, top_p=0.9)
    a, b = (generate(model, tiny_tokenizer, prompts, sampled, batch_size=3, seed=1) for _ in range(2))
    assert [g.token_ids for g in a] == [g.token_ids for g in b]


def test_generation_stops_at_eos_and_pad_is_not_eos(model, tiny_tokenizer):
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    end_of_text = tiny_tokenizer.convert_tokens_to_ids("<|endoftext|>")  # the tiny vocab's other end token
    assert pad != eos and stop_token_ids(tiny_tokenizer, model) == sorted([eos, end_of_text])
    assert _cut([5, 6, eos, pad, pad], {eos}, pad) == ([5, 6], True, 3)
    assert _cut([5, 6, 7], {eos}, pad) == ([5, 6, 7], False, 3)
    # A model whose every step says EOS: generation ends at once, flagged as ended.
    with torch.no_grad():
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.lm_head.out_features))
        model.lm_head.bias[eos] = 1e4
    try:
        out = generate(model, tiny_tokenizer, [[5, 6, 7], [8, 9]], GenerationSettings(max_new_tokens=8), batch_size=2)
    finally:
        model.lm_head.bias = None
    assert [(g.token_ids, g.ended_with_eos, g.text) for g in out] == [([], True, ""), ([], True, "")]


def test_perplexity_is_exp_of_mean_doctor_token_nll(model, tiny_tokenizer, conversations):
    nll = doctor_nll(model, tiny_tokenizer, conversations, "chat_template", batch_size=3)
    total, count = 0.0, 0
    for messages in conversations:  # independently: one row at a time, no padding, plain cross-entropy
        t = tokenize_conversation(tiny_tokenizer, messages, "chat_template")
        ids, mask = torch.tensor([t["input_ids"]]), torch.tensor(t["assistant_masks"])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        logp = torch.log_softmax(logits.double(), -1)
        for pos in range(1, ids.shape[1]):
            if mask[pos]:
                total -= logp[pos - 1, ids[0, pos]].item()
                count += 1
    assert sum(c for _, c in nll) == count
    assert perplexity(nll) == pytest.approx(math.exp(total / count), rel=1e-5)


def _by_hand(model, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context), one token at a time, each from its own forward pass."""
    total = 0.0
    for k, token in enumerate(continuation):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([context + continuation[:k]])).logits[0, -1]
        total += torch.log_softmax(logits.double(), -1)[token].item()
    return total


def test_mcq_scores_are_option_log_likelihoods_computed_by_hand(model, tiny_tokenizer):
    item = mcq_data.Item("q1", "Which drug lowers a fever?", ["paracetamol", "insulin", "warfarin", "a cast"],
                         list("ABCD"), 0)
    pairs = mcq.encode(tiny_tokenizer, item, "plain")
    # what is scored: the prompt with its options, then the letter after "Answer:"
    assert tiny_tokenizer.decode(pairs[1][0]).endswith("D. a cast\nAnswer:")
    assert tiny_tokenizer.decode(pairs[1][1]) == " B"
    got = mcq.score_items(model, tiny_tokenizer, [item], "plain", batch_size=3)[0]
    for (context, cont), label in zip(pairs, item.labels):
        assert got["logprobs"][label] == pytest.approx(_by_hand(model, context, cont), abs=1e-4)
    assert got["choice"] == max(got["logprobs"], key=got["logprobs"].get)
    # multi-token continuations take the other path; check it the same way
    long_pairs = [(pairs[0][0], tiny_tokenizer(" paracetamol twice daily", add_special_tokens=False)["input_ids"]),
                  (pairs[0][0][:-5], tiny_tokenizer(" maybe", add_special_tokens=False)["input_ids"])]
    assert len(long_pairs[0][1]) > 1
    for lp, (context, cont) in zip(mcq.continuation_logprobs(model, long_pairs, tiny_tokenizer.pad_token_id), long_pairs):
        assert lp == pytest.approx(_by_hand(model, context, cont), abs=1e-4)


def test_acc_norm_divides_by_the_option_length_as_lm_eval_does():
    labels = ["yes", "no", "maybe"]
    # acc: "no" has the highest log-likelihood; per character, "maybe" wins (-4/5 > -3/3 > -2.5/2)
    assert mcq.choices([-3.0, -2.5, -4.0], labels) == (1, 2)
    assert mcq.choices([-1.5, -1.0, -9.0], labels) == (1, 0)  # per character -0.5 twice: ties go to the first (numpy.argmax)
    results = [{"correct": True, "correct_norm": False}, {"correct": False, "correct_norm": False},
               {"correct": True, "correct_norm": True}, {"correct": False, "correct_norm": True}]
    acc = mcq.accuracy(results)
    assert acc["acc"]["value"] == 0.5 and acc["acc_norm"]["correct"] == 2
    assert acc["acc"]["ci95"] == pytest.approx(list(mcq.wilson_interval(2, 4)))


def test_prompts_are_lm_evals_zero_shot_formats():
    folder = shared("mcq_eval")
    suites = dict(mcq_data.benchmarks([str(folder)]))
    medqa, pubmed, ck = (suites[k][0] for k in ("medqa_usmle_4options_300", "pubmedqa_test_200",
                                                "clinical_knowledge_test"))
    assert medqa.prompt.startswith("Question: A junior orthopaedic surgery resident")
    assert medqa.prompt.endswith("\nD. Refuse to dictate the operative report\nAnswer:")
    assert pubmed.prompt.startswith("Abstract: Dyschesia can be provoked") and "\nQuestion: Is anorectal" in pubmed.prompt
    assert ck.prompt.startswith("The following are multiple choice questions (with answers) about clinical "
                                "knowledge.\n\n") and ck.prompt.endswith("\nAnswer:")


def test_wilson_interval():
    low, high = mcq.wilson_interval(30, 100)  # textbook value: 0.2189 .. 0.3958
    assert (round(low, 4), round(high, 4)) == (0.2189, 0.3958)
    assert mcq.wilson_interval(0, 200)[0] == 0.0 and 0 < mcq.wilson_interval(0, 200)[1] < 0.02


def test_shared_benchmark_files_load():
    folder = shared("mcq_eval")
    suites = dict(mcq_data.benchmarks([str(folder)]))
    assert {name: len(items) for name, items in suites.items()} == {
        "clinical_knowledge_test": 265, "college_medicine_test": 173, "medqa_usmle_4options_300": 300,
        "pubmedqa_test_200": 200}
    medqa = suites["medqa_usmle_4options_300"][0]
    assert medqa.labels == list("ABCD") and medqa.labels[medqa.answer] == "B"
    pub = suites["pubmedqa_test_200"][0]
    assert pub.labels == ["yes", "no", "maybe"] and pub.question.startswith("Abstract: ") and not pub.lettered


@pytest.mark.parametrize("name,text,match", [
    ("medqa.jsonl", '{"question": "Q?", "options": {"A": "a", "B": "b"}}\n', "item 0: no 'answer_idx' field"),
    ("mmlu.csv", "Q1?,a,b,c,d,A\nQ2?,a,b,c,d,\n", "line 2: expected 6 columns"),
    ("pubmed.json", '{"123": {"QUESTION": "Q?", "CONTEXTS": ["c"]}}', "PMID 123 has no answer"),
    ("notes.txt", "hello", "unknown benchmark format"),
])
def test_a_benchmark_file_without_an_answer_is_a_clear_error(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        mcq_data.benchmarks([str(path)])
    with pytest.raises(DataError, match="is neither a file, a folder nor one of medqa"):
        mcq_data.benchmarks([str(tmp_path / "missing.jsonl")])
