"""Packed sweep jobs in one process (medchat.sweeps.pack_train) against the same jobs run alone through
pipeline.train, the real solo path (TRL's SFTTrainer): same micro-batches, same adapters, same held-out loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose

# 4 optimizer steps of 2 accumulated micro-batches (HF's num_items_in_batch normalisation is exercised), packed
# (padding-free) rows, an fp32 base (quant=none), dropout 0: the deterministic setting.
# Why not the 4-bit base: bitsandbytes' CPU 4-bit matmul gives shape-dependent results (measured: the base model's
# held-out loss, no adapter involved, 7.643915 solo (one flattened row per batch) vs 7.643937 packed (two rows),
# step-1 loss 2.2e-5 apart with equal weights), and AdamW's m/(sqrt(v)+eps) turns those into up to ~lr-sized
# differences of lora_A entries whose gradients are near zero (1.1e-3 and 1.6e-3 max abs after 4 steps at lr 1e-3 /
# 2e-3, measured). With the fp32 base the same two jobs agree within 2.1e-7 (measured), so the loop itself adds
# nothing: the tolerance below holds for the fp32 base only.
CHEAP = ["trainer=debug", "dataset.n=40", "dataset.eval_size=4", "trainer.max_length=128", "trainer.max_steps=4",
         "trainer.save_steps=2", "trainer.logging_steps=1", "trainer.eval_steps=2",
         "trainer.per_device_train_batch_size=2", "trainer.gradient_accumulation_steps=2", "lora.lora_dropout=0",
         "quant=none", "tracker=none"]
# Two jobs differing in r, alpha, targets (job 0 also trains lm_head in full: the tiny model's all_linear_lm_head),
# learning rate, schedule and seed.
JOBS = [["lora.r=4", "lora.lora_alpha=8", "trainer.learning_rate=1e-3", "trainer.seed=1"],
        ["lora.r=8", "lora.lora_alpha=32", "lora.targets=qv", "trainer.learning_rate=2e-3",
         "trainer.lr_scheduler_type=linear", "trainer.seed=2"]]
TOL = 1e-5


def adapter(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    """Each job alone through pipeline.train; the micro-batches its trainer stepped on, spied."""
    import transformers

    from medchat.pipeline import train

    root = tmp_path_factory.mktemp("solo")
    seen: list[list] = []
    original = transformers.Trainer.training_step

    def spy(self, model, inputs, num_items_in_batch=None):
        seen[-1].append(({k: v.detach().cpu().clone() for k, v in inputs.items() if torch.is_tensor(v)},
                         int(num_items_in_batch)))
        return original(self, model, inputs, num_items_in_batch)

    transformers.Trainer.training_step = spy
    try:
        metrics = []
        for i, job in enumerate(JOBS):
            seen.append([])
            metrics.append(train(compose(*CHEAP, *job), root / str(i)))
    finally:
        transformers.Trainer.training_step = original
    return root, metrics, seen


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from medchat.sweeps.pack_train import train_pack

    root = tmp_path_factory.mktemp("packed")
    runs = [root / str(i) for i in range(len(JOBS))]
    return root, train_pack([compose(*CHEAP, *job) for job in JOBS], runs)


def test_each_job_gets_its_solo_runs_micro_batches_in_its_order(solo, packed):
    """The packed loop's data (TRL's preparation and collator, accelerate's seeded sampler) against what the real
    solo trainer fed its training_step, micro-batch by micro-batch, with HF's num_items_in_batch."""
    from medchat import modeling
    from medchat.sweeps.pack_data import Schedule, collator, optimizer_steps, prepare_dataset, trained_tokens
    from medchat.stages import stage_for
    from medchat import plan as run_plan

    _, _, seen = solo
    for i, job in enumerate(JOBS):
        cfg = compose(*CHEAP, *job)
        tokenizer = modeling.load_tokenizer(cfg.model)
        stage = stage_for(cfg.stage)
        data = stage.data(cfg.dataset, cfg.trainer, tokenizer, packed[0] / ".tok")
        args = stage.trainer_config(cfg.trainer, cfg.tracker, packed[0] / "x", run_plan.resolve(cfg))
        ds = prepare_dataset(data.train, tokenizer, args, "train")
        ours = [(b, sum(trained_tokens(x) for x in bs)) for _, bs in
                optimizer_steps(ds, collator(tokenizer, args), args, Schedule.of(len(ds), args)) for b in bs]
        assert len(ours) == len(seen[i]) == 8
        for (b, items), (theirs, their_items) in zip(ours, seen[i]):
            assert items == their_items
            for key in ("input_ids", "labels", "position_ids"):
                assert torch.equal(b[key], theirs[key]), key
    # the two jobs' seeds give different orders: the comparison above is not of one shared order
    assert not torch.equal(seen[0][0][0]["input_ids"], seen[1][0][0]["input_ids"])


def steps_of(cfg, args, work):
    """(micro-batches, num_items_in_batch) per optimizer step, as the packed loop feeds job `cfg` with `args`."""
    from medchat import modeling
    from medchat.stages import stage_for
    from medchat.sweeps.pack_data import Schedule, collator, optimizer_steps, prepare_dataset, trained_tokens

    tokenizer = modeling.load_tokenizer(cfg.model)
    data = stage_for(cfg.stage).data(cfg.dataset, cfg.trainer, tokenizer, work / ".tok")
    ds = prepare_dataset(data.train, tokenizer, args, "train")
    return [(bs, sum(trained_tokens(b) for b in bs))
            for _, bs in optimizer_steps(ds, collator(tokenizer, args), args, Schedule.of(len(ds), args))]


def test_a_smaller_split_of_each_step_keeps_the_solo_steps_rows_and_token_count(solo, packed):
    """What lets the memory plan split a job's optimizer step otherwise than its solo run (1 row x 4 accumulation
    where the solo trainer ran 2 x 2): accelerate's permutation is cut into consecutive chunks, so step k takes the
    same rows, in the same order, however they are split; and padding-free collation labels every document's
    first token -100, so HF's num_items_in_batch (the step's trained tokens) is the same too."""
    from medchat import plan as run_plan
    from medchat.stages import stage_for

    _, _, seen = solo
    for i, job in enumerate(JOBS):
        cfg = compose(*CHEAP, *job)
        args = stage_for(cfg.stage).trainer_config(cfg.trainer, cfg.tracker, packed[0] / "x", run_plan.resolve(cfg))
        args.per_device_train_batch_size, args.gradient_accumulation_steps = 1, 4
        ours = steps_of(cfg, args, packed[0])
        theirs = [seen[i][k:k + 2] for k in range(0, len(seen[i]), 2)]  # the solo trainer's 2 micro-batches a step
        assert len(ours) == len(theirs) == 4 and all(len(bs) == 4 for bs, _ in ours)
        for (bs, items), step in zip(ours, theirs):
            assert items == step[0][1] == step[1][1]  # the solo trainer passes the step's count with each
            for key in ("input_ids", "labels"):  # each micro-batch one flattened row: the step's rows in order
                assert torch.equal(torch.cat([b[key] for b in bs], dim=1), torch.cat([t[key] for t, _ in step], dim=1))


def test_a_pack_split_one_row_per_job_equals_the_solo_runs(tmp_path, solo, monkeypatch):
    """The memory plan choosing 1 row x 4 accumulation per job (the real chooser over a memory model where only one
    row per job fits) trains each job to its solo run's adapter (2 x 2 there), within the same tolerance."""
    from medchat.sweeps import pack_memory, pack_train

    def one_row_fits(jobs, *, rows_per_step, trainer_cfg, **_):
        return pack_memory.choose_rows_per_job(jobs=len(jobs), rows_per_step=rows_per_step,
                                               max_length=trainer_cfg.max_length,
                                               budget_bytes=trainer_cfg.max_length, estimate=lambda tokens: tokens)

    monkeypatch.setattr(pack_memory, "plan_pack_rows", one_row_fits)  # where pack_rows asks it
    solo_root, solo_metrics, _ = solo
    runs = [tmp_path / str(i) for i in range(len(JOBS))]
    results = pack_train.train_pack([compose(*CHEAP, *job) for job in JOBS], runs)
    for i, run in enumerate(runs):
        pack = json.loads((run / "plan.json").read_text())["pack"]
        assert (pack["rows_per_job"], pack["accumulation"], pack["rows_per_forward"], pack["fits"]) == (1, 4, 2, True)
        assert pack["solo_split"] == [[2, 2], [2, 2]]
        speed = results[i]["speed"]
        assert (speed["per_device_train_batch_size"], speed["gradient_accumulation_steps"]) == (1, 4)
        diff = max_diff(adapter(run), adapter(solo_root / str(i)))
        print(f"job {i}: max |packed 1x4 - solo 2x2| = {diff:.2e}")
        assert diff <= TOL, (i, diff)
        assert results[i]["global_step"] == solo_metrics[i]["global_step"] == 4
        assert results[i]["num_input_tokens_seen"] == solo_metrics[i]["num_input_tokens_seen"]
        assert results[i]["eval_loss_after"] == pytest.approx(solo_metrics[i]["eval_loss_after"], abs=1e-5)
        assert results[i]["train_loss"] == pytest.approx(solo_metrics[i]["train_loss"], abs=1e-5)


def test_packed_adapters_equal_their_solo_runs(solo, packed):
    solo_root, solo_metrics, _ = solo
    root, results = packed
    diffs = []
    for i in range(len(JOBS)):
        ours, theirs = adapter(root / str(i)), adapter(solo_root / str(i))
        diff = max_diff(ours, theirs)
        moved = max((v - 0).abs().max().item() for k, v in ours.items() if "lora_B" in k)
        diffs.append(diff)
        assert moved > 1e-4, "B starts at 0: it must have trained for the comparison to mean anything"
        assert diff <= TOL, (i, diff)
        assert results[i]["eval_loss_after"] == pytest.approx(solo_metrics[i]["eval_loss_after"], abs=1e-5)
        assert results[i]["eval_loss_before"] == pytest.approx(solo_metrics[i]["eval_loss_before"], abs=1e-5)
        assert results[i]["global_step"] == solo_metrics[i]["global_step"] == 4
        assert results[i]["num_input_tokens_seen"] == solo_metrics[i]["num_input_tokens_seen"]
        assert results[i]["trainable_parameters"] == solo_metrics[i]["trainable_parameters"]
        # plan.json records what the pack ran: on CPU each job's solo micro-batch, both jobs' rows in one forward
        pack = json.loads((root / str(i) / "plan.json").read_text())["pack"]
        assert (pack["rows_per_job"], pack["accumulation"], pack["rows_per_forward"], pack["jobs"]) == (2, 2, 4, 2)
        assert pack["estimate_gib"] is None and "no GPU" in pack["reason"] and pack["solo_split"] == [[2, 2], [2, 2]]
    print("max |packed - solo| per job:", diffs)


def test_a_job_whose_loss_turns_nan_fails_alone(tmp_path, packed):
    """trainer.learning_rate=inf: job 1's first update makes its weights inf/NaN, its loss NaN at step 2. It fails
    with the reason; job 0 trains on to the end, as it would have beside a healthy job."""
    from medchat.rundir import read_status
    from medchat.sweeps.pack_train import train_pack

    runs = [tmp_path / "0", tmp_path / "1"]
    results = train_pack([compose(*CHEAP, *JOBS[0]), compose(*CHEAP, *JOBS[1], "trainer.learning_rate=inf")], runs)
    bad = read_status(runs[1])
    assert bad["state"] == "failed" and "FloatingPointError" in bad["reason"] and "loss is nan" in bad["reason"], bad
    assert "failed" in results[1] and not (runs[1] / "adapter").exists()
    assert read_status(runs[0])["state"] == "done" and results[0]["global_step"] == 4
    assert max_diff(adapter(runs[0]), adapter(packed[0] / "0")) <= TOL


def test_an_interrupted_pack_resumes_every_job_to_the_uninterrupted_result(tmp_path, packed, monkeypatch):
    """SIGTERM after step 2 (medchat.preemption's handler, the signal sent by the test hook): every job saves
    checkpoint-2 and is left interrupted; the same jobs again with trainer.resume=auto continue from it and end
    equal to the uninterrupted packed run."""
    import os
    import signal

    from medchat.rundir import read_status
    from medchat.sweeps import pack_train

    runs = [tmp_path / str(i) for i in range(len(JOBS))]
    monkeypatch.setattr(pack_train, "after_step", lambda step: os.kill(os.getpid(), signal.SIGTERM) if step == 2 else None)
    with pytest.raises(SystemExit):
        pack_train.train_pack([compose(*CHEAP, *job) for job in JOBS], runs)
    for run in runs:
        status = read_status(run)
        assert status["state"] == "interrupted" and status["step"] == 2, status
        assert (run / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
        assert not (run / "adapter").exists()
    monkeypatch.setattr(pack_train, "after_step", None)
    results = pack_train.train_pack([compose(*CHEAP, *job, "trainer.resume=auto") for job in JOBS], runs)
    for i, run in enumerate(runs):
        assert results[i]["resumed_from"].endswith("checkpoint-2") and results[i]["global_step"] == 4
        diff = max_diff(adapter(run), adapter(packed[0] / str(i)))
        assert diff <= 1e-7, (i, diff)  # the same process's arithmetic: the resume adds nothing
        assert results[i]["eval_loss_before"] == packed[1][i]["eval_loss_before"]  # the first session's
        assert results[i]["num_input_tokens_seen"] == packed[1][i]["num_input_tokens_seen"]


def test_held_out_loss_during_training_is_the_solo_runs(solo, packed):
    """trainer.eval_steps=2: each packed job scores the held-out rows at steps 2 and 4, as its solo Trainer does,
    with the same token-weighted loss (the checkpoints' trainer_state.json log_history)."""
    def evals(run: Path) -> dict[int, float]:
        state = json.loads((run / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
        return {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e and e["step"] > 0}

    for i in range(len(JOBS)):
        mine, theirs = evals(packed[0] / str(i)), evals(solo[0] / str(i))
        assert sorted(mine) == sorted(theirs) == [2, 4], (mine, theirs)
        for step in theirs:
            assert abs(mine[step] - theirs[step]) < TOL, (i, step, mine[step], theirs[step])


@pytest.mark.parametrize("chunk", [None, 7])
def test_block_nlls_equal_the_full_logits_loss(tiny_dir, monkeypatch, chunk):
    """packed.block_nlls (decoder once, the output projection only at trained positions, chunked and recomputed
    in backward) against HF's own forward: its full logits and cross-entropy per job block, values and the LoRA
    gradients. chunk=7: many chunks, each recomputed."""
    from transformers import AutoModelForCausalLM

    from medchat.sweeps import packed

    if chunk:
        monkeypatch.setattr(packed, "LOGIT_ELEMENTS", chunk * 2048)
    torch.manual_seed(0)
    jobs = [packed.PackedJob(r=4, lora_alpha=8, seed=0), packed.PackedJob(r=8, lora_alpha=16, seed=1)]
    pack = packed.pack_model(AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32), jobs)
    for layer in pack.layers.values():
        for b in layer.lora_B.values():
            torch.nn.init.normal_(b.weight, std=0.05)
    ids = torch.randint(4, 2000, (3, 20))
    labels = ids.clone()
    labels[:, :6] = -100  # prompts untrained
    labels[2, 15:] = -100
    merged = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    counts = [1, 2]
    results = []
    for how in ("full", "blocks", "blocks, positions from host labels"):
        pack.model.zero_grad()
        with pack.ctx.packed(counts):
            if how == "full":
                logits = pack.model(input_ids=ids, attention_mask=merged["attention_mask"]).logits
                nlls = [packed.summed_nll(logits[:1], labels[:1]), packed.summed_nll(logits[1:], labels[1:])]
            elif how == "blocks":
                nlls = packed.block_nlls(pack.model, merged, counts)
            else:  # the labels given on the device would be found there; a copy stands for the host's
                nlls = packed.block_nlls(pack.model, {**merged, "labels": labels.clone()}, counts, labels)
        torch.stack([n for n, _ in nlls]).sum().backward()
        grads = {k: p.grad.clone() for k, p in pack.model.named_parameters() if p.grad is not None}
        results.append(([float(n.detach()) for n, _ in nlls], [c for _, c in nlls], grads))
    (v0, c0, g0), *blocks = results
    for v1, c1, g1 in blocks:
        assert c0 == c1 == [14, 14 + 9]
        assert v1 == pytest.approx(v0, rel=1e-6)
        assert g0.keys() == g1.keys() and g0
        for k in g0:
            assert (g1[k] - g0[k]).abs().max() <= 1e-5 * g0[k].abs().max() + 1e-9, (k, (g1[k] - g0[k]).abs().max().item(), g0[k].abs().max().item())


def test_tracker_tensorboard_gets_each_jobs_scalars(tmp_path):
    """tracker=tensorboard: each packed job writes the scalars a solo run's TensorBoard callback writes, under the
    same names, into its own RUN/tensorboard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from medchat.sweeps.pack_train import train_pack

    runs = [tmp_path / str(i) for i in range(len(JOBS))]
    results = train_pack([compose(*CHEAP, *job, "tracker=tensorboard") for job in JOBS], runs)
    for run, metrics in zip(runs, results):
        events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
        assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
        assert {"train/learning_rate", "train/grad_norm"} <= scalars.keys()
        evals = dict(scalars["eval/loss"])
        assert sorted(evals) == [0, 2, 4]  # before training, then eval_steps=2 (the final one is step 4's)
        assert evals[0] == pytest.approx(metrics["eval_loss_before"]) and evals[4] == pytest.approx(metrics["eval_loss_after"])
        assert metrics["tracker"].startswith("tensorboard --logdir")
