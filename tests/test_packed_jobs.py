"""Packed jobs (issue 24): each packed job trains exactly as it would alone.

The reference is independent of medchat.sweeps.packed: each job trained alone through PEFT's own LoRA
(get_peft_model + LoraConfig, seeded by torch.manual_seed), HF's own causal-LM loss (labels passed to the model),
torch.optim.AdamW(foreach=False), clip_grad_norm_ and transformers' get_scheduler, on the same micro-batches in the
same order. The packed run sees those micro-batches concatenated and must end with each job's A and B equal to
the solo run's within 1e-5 (fp32, dropout 0).

Padding width: a packed step pads every job's rows to the pack's longest row. The solo reference gets the same
rows at the same width (as the issue's packed micro-batches are defined). At its own, narrower width a solo run is
not bit-identical to itself at the wider width: fp32 GEMM/attention reductions change with the shape, and AdamW's
m/(sqrt(v)+eps) turns those ~1e-9 differences in near-zero gradient entries into ~lr*1e-2 differences of the
weights (3.3e-5 measured for job 3). test_padding_width_is_the_only_difference shows that this is all of it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medchat.sweeps.packed import ALL_LINEAR, PackedJob, pack_model, packed_step, save_job_adapter, summed_nll

STEPS = 4
PAD = 0
TOL = 1e-5
# Four jobs differing in every adapter-side key: r, alpha, targets, lr, schedule/warmup, weight decay, clipping, seed.
JOBS = [
    PackedJob(r=4, lora_alpha=8, target_modules=("q_proj", "v_proj"), learning_rate=1e-3, seed=0),
    PackedJob(r=8, lora_alpha=16, target_modules=ALL_LINEAR, learning_rate=2e-3, lr_scheduler_type="linear",
              warmup_steps=1, weight_decay=0.01, seed=1),
    PackedJob(r=8, lora_alpha=32, target_modules=("q_proj", "v_proj"), learning_rate=1e-3,
              lr_scheduler_type="cosine", warmup_steps=2, max_grad_norm=0.05, seed=2),  # small: clipping engages
    PackedJob(r=4, lora_alpha=4, target_modules=ALL_LINEAR, learning_rate=2e-3, max_grad_norm=None, seed=3),
]
ROWS = [2, 3, 2, 1]  # rows per micro-batch differ per job too


def micro_batches(job: int, rows: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    """Job `job`'s STEPS micro-batches: rows of random length, right-padded to the micro-batch's own longest row
    (as a solo run pads), a prompt of a few tokens untrained (-100), padding untrained."""
    g = torch.Generator().manual_seed(100 + job)
    out = []
    for _ in range(STEPS):
        lengths = torch.randint(6, 20, (rows,), generator=g).tolist()
        width = max(lengths)
        ids = torch.full((rows, width), PAD)
        mask = torch.zeros((rows, width), dtype=torch.long)
        labels = torch.full((rows, width), -100)
        for i, n in enumerate(lengths):
            ids[i, :n] = torch.randint(4, vocab, (n,), generator=g)
            mask[i, :n] = 1
            prompt = int(torch.randint(1, 4, (1,), generator=g))
            labels[i, prompt:n] = ids[i, prompt:n]
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def load_base(tiny_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)


def solo_run(tiny_dir, job: PackedJob, batches, dropout_seed: int | None = None):
    """The job trained alone with PEFT, as the HF Trainer steps it: loss (HF's, mean over the micro-batch's
    trained tokens), backward, clip, AdamW, scheduler. Returns (adapter state dict under PEFT's saved names,
    losses). `dropout_seed` reseeds the global RNG after init: the dropout stream of a solo run."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import get_scheduler

    # PEFT draws each LoRA's init from the global RNG: a solo run seeded with the job's seed. The packed job replays
    # these draws from its own generator (checked below at step 0), so no weights are copied between the runs.
    torch.manual_seed(job.seed)
    model = get_peft_model(load_base(tiny_dir), LoraConfig(r=job.r, lora_alpha=job.lora_alpha,
                                                           target_modules=list(job.target_modules),
                                                           lora_dropout=job.lora_dropout, task_type="CAUSAL_LM"))
    init = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    if dropout_seed is not None:
        torch.manual_seed(dropout_seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=job.learning_rate, weight_decay=job.weight_decay, foreach=False)
    sched = get_scheduler(job.lr_scheduler_type, opt, num_warmup_steps=job.warmup_steps, num_training_steps=STEPS)
    model.train()
    losses = []
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        if job.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, job.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return init, {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}, losses


def optimizers(pack):
    """Each packed job's optimizer and schedule, made as its solo reference's are (below)."""
    from transformers import get_scheduler

    opts = [torch.optim.AdamW(params, lr=job.learning_rate, weight_decay=job.weight_decay, foreach=False)
            for job, params in zip(pack.jobs, pack.params)]
    scheds = [get_scheduler(job.lr_scheduler_type, opt, num_warmup_steps=job.warmup_steps, num_training_steps=STEPS)
              for job, opt in zip(pack.jobs, opts)]
    return opts, scheds


def packed_run(tiny_dir, jobs, per_job_batches):
    from medchat.sweeps.packed import job_state_dict

    pack = pack_model(load_base(tiny_dir), jobs)
    init = [job_state_dict(pack, j) for j in range(len(jobs))]
    opts, scheds = optimizers(pack)
    losses = [packed_step(pack, [b[k] for b in per_job_batches], opts, scheds, pad_token_id=PAD)
              for k in range(STEPS)]
    return pack, init, losses


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def vocab(tiny_dir):
    return load_base(tiny_dir).config.vocab_size


def widened(batch: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """Right padding to `width`: pad ids, attention 0, labels -100 (nothing real sees it, nothing trains on it)."""
    values = {"input_ids": PAD, "attention_mask": 0, "labels": -100}
    return {k: torch.nn.functional.pad(v, (0, width - v.shape[1]), value=values[k]) for k, v in batch.items()}


@pytest.fixture(scope="module")
def own_width(vocab):
    """Each job's micro-batches padded as a solo run pads them (to the micro-batch's own longest row)."""
    return [micro_batches(j, ROWS[j], vocab) for j in range(len(JOBS))]


@pytest.fixture(scope="module")
def data(own_width):
    """The same micro-batches padded to the pack's common width at each step."""
    widths = [max(batches[k]["input_ids"].shape[1] for batches in own_width) for k in range(STEPS)]
    return [[widened(b, widths[k]) for k, b in enumerate(batches)] for batches in own_width]


@pytest.fixture(scope="module")
def packed(tiny_dir, data):
    return packed_run(tiny_dir, JOBS, data)


@pytest.fixture(scope="module")
def solo(tiny_dir, data):
    """Each job trained alone (PEFT) on its micro-batches at the pack's width: (init, final, losses) per job."""
    return [solo_run(tiny_dir, job, data[j]) for j, job in enumerate(JOBS)]


def test_packed_jobs_equal_their_solo_peft_runs(data, packed, solo):
    from medchat.sweeps.packed import job_state_dict

    pack, packed_init, packed_losses = packed
    diffs = []
    for j, job in enumerate(JOBS):
        solo_init, solo_final, solo_losses = solo[j]
        assert max_diff(packed_init[j], solo_init) == 0.0  # same init from the same seed, no copying
        final = job_state_dict(pack, j)
        assert len(final) == 2 * 4 * len(job.target_modules)  # A and B on each targeted module of 4 layers
        diff = max_diff(final, solo_final)
        moved = max_diff(final, solo_init)
        diffs.append(diff)
        assert moved > 1e-3, "the adapter must have trained for the comparison to mean anything"
        assert diff <= TOL, (j, diff)
        assert [pl[j] for pl in packed_losses] == pytest.approx(solo_losses, abs=1e-5)
    print("max |packed - solo| per job:", diffs)


def test_padding_width_is_the_only_difference(tiny_dir, own_width, packed, solo):
    """Against solo runs at their own (narrower) padding width, packed jobs differ by no more than that same solo
    run differs from itself padded to the pack's width: packing adds nothing to it beyond TOL."""
    from medchat.sweeps.packed import job_state_dict

    pack, _, _ = packed
    report = []
    for j, job in enumerate(JOBS):
        _, narrow, _ = solo_run(tiny_dir, job, own_width[j])
        _, wide, _ = solo[j]
        ours = max_diff(job_state_dict(pack, j), narrow)
        padding_alone = max_diff(wide, narrow)
        report.append((ours, padding_alone))
        assert ours <= padding_alone + TOL, (j, ours, padding_alone)
    print("max |packed - solo at own width|, |solo padded - solo at own width| per job:", report)


def test_mis_assigned_rows_fail_the_comparison(tiny_dir, data, packed):
    """The comparison can fail: swapping jobs 0 and 2's micro-batches (both q/v, r 4 vs 8) moves their adapters
    far beyond TOL from the correctly packed ones."""
    from medchat.sweeps.packed import job_state_dict

    pack, _, _ = packed
    swapped = [data[2], data[1], data[0], data[3]]
    wrong, _, _ = packed_run(tiny_dir, JOBS, swapped)
    diff = max_diff(job_state_dict(wrong, 0), job_state_dict(pack, 0))
    print("mis-assigned job 0: max diff", diff)
    assert diff > 100 * TOL, diff
    # jobs whose rows were not swapped are untouched by the others' data
    assert max_diff(job_state_dict(wrong, 1), job_state_dict(pack, 1)) <= TOL


def test_saved_adapter_loads_in_peft_with_the_packed_logits(tiny_dir, data, packed, tmp_path):
    from peft import PeftModel

    from medchat.sweeps.packed import concat_rows

    pack, _, _ = packed
    model = pack.model.eval()
    batch = data[0][0]
    merged, rows = concat_rows([d[0] for d in data], PAD)
    with torch.no_grad():
        with pack.ctx.packed(rows):
            all_rows = model(input_ids=merged["input_ids"], attention_mask=merged["attention_mask"]).logits
    diffs = []
    for j in (1, 2):
        save_job_adapter(pack, j, tmp_path / f"job{j}")
        peft_model = PeftModel.from_pretrained(load_base(tiny_dir), tmp_path / f"job{j}").eval()
        assert peft_model.peft_config["default"].r == JOBS[j].r
        with torch.no_grad():
            with pack.ctx.restrict(j):
                ours = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            theirs = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            base = peft_model.get_base_model()
            with peft_model.disable_adapter():
                plain = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        diffs.append((ours - theirs).abs().max().item())
        assert diffs[-1] <= TOL, diffs
        assert (theirs - plain).abs().max().item() > 1e-3  # the adapter is really applied
        # the packed forward gives job j's rows exactly what the restricted model gives them (padding aside)
        start = sum(rows[:j])
        real = merged["attention_mask"][start:start + rows[j]].bool()
        with torch.no_grad(), pack.ctx.restrict(j):
            alone = model(input_ids=merged["input_ids"][start:start + rows[j]],
                               attention_mask=merged["attention_mask"][start:start + rows[j]]).logits
        assert (all_rows[start:start + rows[j]][real] - alone[real]).abs().max().item() <= TOL
    print("max |packed restricted - PeftModel.from_pretrained| logits:", diffs)


def test_dropout_losses_agree_within_dropout_noise(tiny_dir, data):
    """With lora_dropout 0.05 masks come from each job's own generator, so a packed job cannot match its solo
    run draw for draw. The noise bound is measured, not guessed: two solo runs that differ only in their dropout
    stream. The packed job's losses must stay within 3x that spread (+1e-4) of the solo run's, step by step."""
    jobs = [dataclasses.replace(JOBS[j], lora_dropout=0.05) for j in (0, 1)]
    _, _, packed_losses = packed_run(tiny_dir, jobs, data[:2])
    for j, job in enumerate(jobs):
        _, _, solo_a = solo_run(tiny_dir, job, data[j], dropout_seed=11)
        _, _, solo_b = solo_run(tiny_dir, job, data[j], dropout_seed=12)
        noise = max(abs(a - b) for a, b in zip(solo_a, solo_b))
        ours = [pl[j] for pl in packed_losses]
        gap = max(abs(a - b) for a, b in zip(ours, solo_a))
        print(f"job {j}: solo-vs-solo (dropout streams) {noise:.2e}, packed-vs-solo {gap:.2e}")
        assert noise > 0  # dropout really draws (else the bound says nothing)
        assert gap <= 3 * noise + 1e-4, (gap, noise)


def test_summed_nll_over_its_count_is_hf_loss(tiny_dir, data):
    model = load_base(tiny_dir)
    batch = data[1][0]
    with torch.no_grad():
        out = model(**batch)
    nll, count = summed_nll(out.logits, batch["labels"])
    assert (nll / count).item() == pytest.approx(out.loss.item(), abs=1e-6)


def load_4bit(tiny_dir):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    pytest.importorskip("bitsandbytes")
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, quantization_config=quant)


@pytest.mark.parametrize("rows", ["own", "equal"])
def test_4bit_base_packed_jobs_equal_their_solo_peft_runs(tiny_dir, data, vocab, rows, monkeypatch):
    """QLoRA: two packed jobs over the 4-bit tiny model end where PEFT's own 4-bit LoRA layer trained alone ends.
    Rows per job differing (`own`): the MultiLoRA layer calls bitsandbytes' Linear4bit itself over all jobs' rows,
    then each job's LoRA. Equal (`equal`): the projections both jobs target (q, v) run through StackedLoRA, which
    dequantizes the 4-bit weight itself (medchat.speed.fused_lora.dequantized_weight) for one GEMM over all rows."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import get_scheduler

    from medchat.sweeps import stacked_lora
    from medchat.sweeps.packed import job_state_dict

    jobs, steps = [JOBS[0], JOBS[1]], 2
    if rows == "equal":
        own = [micro_batches(j, 2, vocab) for j in range(2)]
        widths = [max(batches[k]["input_ids"].shape[1] for batches in own) for k in range(steps)]
        data = [[widened(b, widths[k]) for k, b in enumerate(batches[:steps])] for batches in own]
    fused = []
    apply = stacked_lora.StackedLoRA.apply
    monkeypatch.setattr(stacked_lora.StackedLoRA, "apply",
                        lambda x, base, *a: fused.append(base is not None) or apply(x, base, *a))
    pack = pack_model(load_4bit(tiny_dir), jobs)
    assert all(isinstance(layer.base_layer, bnb.nn.Linear4bit) for layer in pack.layers.values())
    opts, scheds = optimizers(pack)
    for k in range(steps):
        packed_step(pack, [data[0][k], data[1][k]], opts, scheds, pad_token_id=PAD)
    for j, job in enumerate(jobs):
        torch.manual_seed(job.seed)
        model = get_peft_model(load_4bit(tiny_dir), LoraConfig(r=job.r, lora_alpha=job.lora_alpha, lora_dropout=0.0,
                                                               target_modules=list(job.target_modules)))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=job.learning_rate, weight_decay=job.weight_decay, foreach=False)
        sched = get_scheduler(job.lr_scheduler_type, opt, num_warmup_steps=job.warmup_steps, num_training_steps=STEPS)
        model.train()
        for batch in data[j][:steps]:
            model(**batch).loss.backward()
            if job.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, job.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        diff = max_diff(job_state_dict(pack, j), {k: v.detach() for k, v in get_peft_model_state_dict(model).items()})
        print(f"4-bit job {j} ({rows} rows): max |packed - solo| {diff:.2e}")
        assert diff <= TOL, (j, diff)
    layers = len([k for k in pack.layers if k.endswith("q_proj")])
    assert fused == ([True] * steps * 2 * layers if rows == "equal" else [])


def test_equal_rows_take_the_batched_path_and_stay_equal_to_solo(tiny_dir, vocab, monkeypatch):
    """Equal rows per job: a module every job targets (q_proj, v_proj here) runs all jobs' LoRA as two batched
    GEMMs over zero-padded ranks (MultiLoRA._stacked); the others keep the per-job loop. Still each job's solo
    PEFT run, within the same 1e-5."""
    from medchat.sweeps.packed import MultiLoRA

    own = [micro_batches(j, 2, vocab) for j in range(len(JOBS))]
    widths = [max(batches[k]["input_ids"].shape[1] for batches in own) for k in range(STEPS)]
    same = [[widened(b, widths[k]) for k, b in enumerate(batches)] for batches in own]
    calls = []
    stacked = MultiLoRA._stacked
    monkeypatch.setattr(MultiLoRA, "_stacked", lambda self, *a: calls.append(1) or stacked(self, *a))
    pack, _, _ = packed_run(tiny_dir, JOBS, same)
    layers = len([k for k in pack.layers if k.endswith("q_proj")])
    assert len(calls) == STEPS * 2 * layers  # q and v of every layer, every step; no other module
    from medchat.sweeps.packed import job_state_dict

    for j, job in enumerate(JOBS):
        _, solo, _ = solo_run(tiny_dir, job, same[j])
        assert max_diff(job_state_dict(pack, j), solo) < TOL, j


@pytest.mark.parametrize("scales", ["powers_of_two", "uneven", "equal"])
@pytest.mark.parametrize("base_kind", ["fused", "module"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stacked_lora_computes_the_per_job_loop(precision, base_kind, scales):
    """StackedLoRA (the base GEMM and two batched GEMMs, masks drawn again in backward) against the plain-autograd
    per-job loop (the base module, then PEFT's arithmetic per job) on the same layer, rows and dropout generators:
    outputs and every gradient (x, each job's A and B, a trained bias). `fused`: a frozen nn.Linear, computed
    inside StackedLoRA; `module`: its bias trained, so the module is called and StackedLoRA adds only the deltas.
    Jobs with different scalings and dropouts, or the same. Equal in fp32;
    under bf16 autocast within bf16 rounding (the loop rounds the delta, then `* scaling`, then the sum)."""
    from medchat.sweeps import stacked_lora
    from medchat.sweeps.packed import MultiLoRA, PackContext

    torch.manual_seed(0)
    if scales == "powers_of_two":  # 2, 1, 8: each job's scaling folded into its h (exact), one batched GEMM
        jobs = [PackedJob(r=4, lora_alpha=8, lora_dropout=0.1, seed=0), PackedJob(r=8, lora_alpha=8, seed=1),
                PackedJob(r=2, lora_alpha=16, lora_dropout=0.3, seed=2)]
    elif scales == "uneven":  # 3, 1.5, 6: one GEMM per job
        jobs = [PackedJob(r=4, lora_alpha=12, lora_dropout=0.1, seed=0), PackedJob(r=8, lora_alpha=12, seed=1),
                PackedJob(r=2, lora_alpha=12, lora_dropout=0.3, seed=2)]
    else:
        jobs = [PackedJob(r=r, lora_alpha=2 * r, lora_dropout=0.05, seed=s) for s, r in enumerate((4, 8, 4))]
    base = torch.nn.Linear(24, 40)
    base.weight.requires_grad_(False)  # frozen, as pack_model leaves it
    base.bias.requires_grad_(base_kind == "module")
    assert stacked_lora.fusable(base) == (base_kind == "fused")
    ctx = PackContext(jobs)
    layer = MultiLoRA(base, ctx)
    for j, job in enumerate(jobs):
        layer.add_job(j, job, torch.Generator().manual_seed(job.seed))
        torch.nn.init.normal_(layer.lora_B[str(j)].weight, std=0.1)  # B starts at zero: make it act
    x0 = torch.randn(6, 5, 24)
    blocks = [(0, 0, 2), (1, 2, 4), (2, 4, 6)]  # job k owns rows 2k, 2k+1
    results = {}
    for path in ("_loop", "_stacked"):
        ctx._dropout_generators.clear()  # both paths draw the same masks from fresh job generators
        layer.zero_grad()
        x = x0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = getattr(layer, path)(x, blocks)
        (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results[path] = (y.detach().float(), x.grad.clone(),
                         {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None})
    (y0, dx0, g0), (y1, dx1, g1) = results["_loop"], results["_stacked"]
    # fp32: the same products in another order (bmm vs mm, the scaling before or after a GEMM), so within a few
    # ulps of each tensor's largest entry; bf16: within bf16 rounding
    tol = 1e-6 if precision == "fp32" else 2e-2

    def close(got, want, name):
        err = (got - want).abs().max().item()
        assert err <= tol * max(1.0, want.abs().max().item()), (name, err, want.abs().max().item())

    close(y1, y0, "output")
    close(dx1, dx0, "input gradient")
    assert g0.keys() == g1.keys() and any("lora_A" in k for k in g0)
    for name in g0:
        close(g1[name], g0[name], name)
    assert (y0 != base(x0)).any()  # the adapters act


def test_native_masks_draw_each_job_once_from_its_own_stream(monkeypatch):
    """StackedLoRA's `native` masks (a bench switch until a GPU measures them): each job's mask comes from
    aten.native_dropout on the device's default generator set to that job's stream, forward and backward use the same
    mask, and the default generator is left as it was. Reference: the same masks drawn independently, then the
    layer's math in plain autograd (fp32)."""
    from medchat.sweeps import stacked_lora
    from medchat.sweeps.packed import MultiLoRA, PackContext

    monkeypatch.setattr(stacked_lora, "MASKS", "native")
    torch.manual_seed(0)
    jobs = [PackedJob(r=4, lora_alpha=8, lora_dropout=0.1, seed=0), PackedJob(r=8, lora_alpha=8, lora_dropout=0.3,
                                                                               seed=1)]
    base = torch.nn.Linear(24, 40)
    base.requires_grad_(False)
    ctx = PackContext(jobs)
    layer = MultiLoRA(base, ctx)
    for j, job in enumerate(jobs):
        layer.add_job(j, job, torch.Generator().manual_seed(job.seed))
        torch.nn.init.normal_(layer.lora_B[str(j)].weight, std=0.1)
    x0 = torch.randn(4, 5, 24)
    blocks = [(0, 0, 2), (1, 2, 4)]
    starts = [ctx.generator(j, x0.device).get_state() for j in range(len(jobs))]
    outside = torch.default_generator.get_state()

    x = x0.clone().requires_grad_(True)
    y = layer._stacked(x, blocks)
    weight = torch.linspace(-1, 1, y.numel()).view_as(y)
    (y * weight).sum().backward()
    assert torch.equal(torch.default_generator.get_state(), outside)  # restored after forward and backward
    assert all(not torch.equal(ctx.generator(j, x0.device).get_state(), starts[j]) for j in range(len(jobs)))
    got = {"output": y.detach(), "x": x.grad.clone(),
           **{n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}}

    layer.zero_grad()
    x = x0.clone().requires_grad_(True)
    pieces = []
    for (j, start, stop), state in zip(blocks, starts):
        torch.default_generator.set_state(state)
        _, mask = torch.ops.aten.native_dropout(x0[start:stop], jobs[j].lora_dropout, True)
        torch.default_generator.set_state(outside)
        dropped = x[start:stop] * mask * (1.0 / (1.0 - jobs[j].lora_dropout))
        a, b = layer.lora_A[str(j)].weight, layer.lora_B[str(j)].weight
        pieces.append(base(x[start:stop]) + jobs[j].scaling * (dropped @ a.t() @ b.t()))
    ref = torch.cat(pieces)
    (ref * weight).sum().backward()
    want = {"output": ref.detach(), "x": x.grad.clone(),
            **{n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}}
    assert got.keys() == want.keys() and any("lora_A" in k for k in got)
    for name in want:
        err = (got[name] - want[name]).abs().max().item()
        assert err <= 1e-6 * max(1.0, want[name].abs().max().item()), (name, err)
    assert (got["output"] != base(x0)).any()
