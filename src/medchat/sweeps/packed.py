"""Packed jobs (issue 24): several LoRA jobs trained in one process on one frozen base, each as it would train alone.

A sweep over adapter-side keys (r, alpha, dropout, targets, lr, schedule, weight decay, clipping, seed) trains N
adapters on the same base. Run one after another, each job pays for its own base forward/backward, and each
step is launch-bound. Packed, one step takes one micro-batch per job, concatenates them along the batch dim and
runs every base projection once over all rows (one dequantize, one GEMM); each job's LoRA adds its delta to its
own rows only.

Why each job's result equals its solo run (tests/test_packed_jobs.py checks it against PEFT, within 1e-5 fp32):
- rows never interact: attention is within a row, norms are per token, and a job's LoRA touches only its rows,
  so job j's rows (and so its loss) depend on job j's parameters and the frozen base only;
- each job's loss is normalised over its own trained tokens (labels != -100 after the shift), exactly as its
  solo loss, and the packed loss is the plain sum: the jobs' parameter sets are disjoint, so d(sum)/d(theta_j) =
  d(loss_j)/d(theta_j), one backward for all;
- clipping, AdamW and the LR schedule are per job (own parameter list, own optimizer, own scheduler), so nothing
  couples the jobs after the backward either (a global clip would: the norm would mix all jobs' gradients);
- right padding: a row padded further to the pack's common length changes nothing before the padding (causal
  attention), and the extra positions carry labels -100.
- init: each job's A is drawn from its own torch.Generator seeded with the job's seed, replaying the draws PEFT
  makes after `torch.manual_seed(seed)` (per targeted module, in `named_modules` order: nn.Linear's default init
  of A, of B, then PEFT's kaiming_uniform_(A, a=sqrt(5)) and B = 0), so a packed job starts where its solo PEFT
  run with that seed starts. Dropout masks come from a second per-job generator; they cannot match a solo run's
  global-RNG masks draw for draw, so with dropout the equality is statistical (same distribution), not exact.

This module is the model side (the layers, a pack's batch, its per-job losses and its one optimizer step:
concat_rows, summed_nll, block_nlls, step_jobs); the launcher's grouping, run dirs, W&B, resume and memory plan
are medchat.sweeps.grouping, pack_train and pack_memory. On a 4-bit base, projections where every job takes part
with as many rows run through StackedLoRA, which dequantizes the weight as a solo run's fused LoRA does
(medchat.speed.fused_lora.dequantized_weight); the others call the bitsandbytes module itself. Both are tested
on CPU with an fp32 compute dtype (equal to PEFT's 4-bit LoRA trained alone); on a GPU with bf16 compute a pack
has trained (bench/RESULTS.md, issue 24) but is not compared with its solo runs: packed and solo runs see
different GEMM shapes and so differ by bf16 rounding.
"""

from __future__ import annotations

import contextlib
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from medchat.sweeps.pack_data import trained_tokens
from medchat.sweeps.stacked_lora import StackedLoRA, fusable

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class PackedJob:
    """One job's adapter-side settings: everything in which jobs of one pack may differ."""

    r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ALL_LINEAR
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0  # None or 0: no clipping
    lr_scheduler_type: str = "constant"  # any name transformers.get_scheduler takes: constant, linear, cosine, ...
    warmup_steps: int = 0
    seed: int = 0

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

    def lora_config(self, base_model_name_or_path: str | None = None):
        """The PEFT LoraConfig this job is equivalent to: used to match target modules exactly as PEFT matches
        them, and written beside an exported adapter."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=sorted(self.target_modules), bias="none", task_type="CAUSAL_LM",
                          base_model_name_or_path=base_model_name_or_path)


class PackContext:
    """What every MultiLoRA layer of one packed model shares: the rows each job owns in the current forward,
    and each job's dropout generator.

    `rows[j]` is how many rows (batch dim) job j has; its rows are the j-th block of the concatenation. With
    `rows` None the layer applies one job's LoRA (`only`) to all rows: the packed model restricted to one job,
    as its exported adapter will behave."""

    def __init__(self, jobs: list[PackedJob]):
        self.jobs = jobs
        self.rows: list[int] | None = None
        self.only: int | None = None
        # Dropout masks per job from the job's own generator: one job's dropout never shifts another's draws.
        # Created lazily on the device the activations live on (a CPU generator cannot fill a CUDA tensor).
        self._dropout_generators: dict[tuple[int, torch.device], torch.Generator] = {}

    def generator(self, job: int, device: torch.device) -> torch.Generator:
        key = (job, device)
        if key not in self._dropout_generators:
            # offset the seed so the dropout stream is not the init stream replayed
            self._dropout_generators[key] = torch.Generator(device=device).manual_seed(self.jobs[job].seed + 1_000_003)
        return self._dropout_generators[key]

    def blocks(self, total_rows: int) -> list[tuple[int, int, int]]:
        """(job, start, stop) of each job's rows in a batch of `total_rows`."""
        if self.rows is None:
            if self.only is None:
                raise RuntimeError("packed model called with neither rows per job (packed) nor one job (ctx.restrict)")
            return [(self.only, 0, total_rows)]
        if sum(self.rows) != total_rows:
            raise ValueError(f"rows per job {self.rows} sum to {sum(self.rows)}, the batch has {total_rows}")
        out, start = [], 0
        for j, n in enumerate(self.rows):
            out.append((j, start, start + n))
            start += n
        return out

    @contextmanager
    def packed(self, rows: list[int]):
        self.rows, self.only = list(rows), None
        try:
            yield
        finally:
            self.rows = None

    @contextmanager
    def restrict(self, job: int):
        self.rows, self.only = None, job
        try:
            yield
        finally:
            self.only = None


class MultiLoRA(nn.Module):
    """A frozen base projection shared by N jobs, each with its own (or no) LoRA on it.

    output = base(x) over all rows (the base module itself is called: plain nn.Linear or bitsandbytes
    Linear4bit, so one dequantize and one GEMM for all jobs), then for each job j that targets this module,
    s_j * B_j(A_j(dropout_j(x_j))) added to job j's rows only. Adapters are fp32 (as PEFT keeps them under
    QLoRA); the delta is cast to the base output's dtype before the add, as PEFT's 4-bit layer does."""

    def __init__(self, base_layer: nn.Linear, ctx: PackContext):
        super().__init__()
        self.base_layer = base_layer
        self.ctx = ctx
        # ModuleDicts keyed by job index: `lora_A.<j>.weight` maps 1:1 to PEFT's `lora_A.weight` on export
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features

    def add_job(self, j: int, job: PackedJob, generator: torch.Generator) -> None:
        # The draws PEFT's LoraLayer.update_layer makes, in its order, from the job's generator instead of the
        # global RNG: nn.Linear(in, r)'s default init, nn.Linear(r, out)'s default init (both kaiming_uniform_
        # a=sqrt(5); bias=False), then reset_lora_parameters: kaiming_uniform_(A, a=sqrt(5)), B = 0. Replaying the
        # two discarded draws keeps the stream aligned with PEFT's for the next targeted module.
        a = nn.Linear(self.in_features, job.r, bias=False, dtype=torch.float32, device="cpu")
        b = nn.Linear(job.r, self.out_features, bias=False, dtype=torch.float32, device="cpu")
        with torch.no_grad():
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5), generator=generator)
            nn.init.kaiming_uniform_(b.weight, a=math.sqrt(5), generator=generator)
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5), generator=generator)
            nn.init.zeros_(b.weight)
        device = next(self.base_layer.parameters()).device
        self.lora_A[str(j)] = a.to(device)
        self.lora_B[str(j)] = b.to(device)

    def _dropout(self, x: torch.Tensor, j: int) -> torch.Tensor:
        p = self.ctx.jobs[j].lora_dropout
        if not self.training or p == 0.0:
            return x
        keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=self.ctx.generator(j, x.device))
        return x * keep * (1.0 / (1.0 - p))

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if len(self.lora_A) == 0:
            return self.base_layer(x, *args, **kwargs)
        blocks = self.ctx.blocks(x.shape[0])
        equal = all(str(j) in self.lora_A and stop - start == blocks[0][2] - blocks[0][1] for j, start, stop in blocks)
        if len(blocks) > 1 and equal and not args and not kwargs:
            return self._stacked(x, blocks)
        return self._loop(x, blocks, *args, **kwargs)

    def _loop(self, x: torch.Tensor, blocks, *args, **kwargs) -> torch.Tensor:
        """The base module over all rows, then each job's LoRA on its own rows, one job after another (plain
        autograd, PEFT's arithmetic: the reference StackedLoRA is tested against)."""
        out = self.base_layer(x, *args, **kwargs)
        pieces = []
        for j, start, stop in blocks:
            out_j = out[start:stop]
            key = str(j)
            if key in self.lora_A:
                a, b = self.lora_A[key], self.lora_B[key]
                x_j = self._dropout(x[start:stop].to(a.weight.dtype), j)
                delta = b(a(x_j)) * self.ctx.jobs[j].scaling
                out_j = out_j + delta.to(out.dtype)
            pieces.append(out_j)
        # out of place (a new tensor, never an in-place add into the base output): bitsandbytes' 4-bit output may
        # be a view autograd refuses to see modified (PEFT clones it for the same reason)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)

    def _stacked(self, x: torch.Tensor, blocks) -> torch.Tensor:
        """Every job of this forward targets this module with as many rows: the base projection and all jobs' LoRA
        in one StackedLoRA (one base GEMM, two batched GEMMs over jobs; a base it cannot compute exactly is
        called as a module and StackedLoRA adds the deltas)."""
        jobs = [j for j, _, _ in blocks]
        p = [self.ctx.jobs[j].lora_dropout if self.training else 0.0 for j in jobs]
        generators = [self.ctx.generator(j, x.device) if pj > 0 else None for j, pj in zip(jobs, p)]
        weights = [self.lora_A[str(j)].weight for j in jobs] + [self.lora_B[str(j)].weight for j in jobs]
        scales = [self.ctx.jobs[j].scaling for j in jobs]
        if fusable(self.base_layer):
            return StackedLoRA.apply(x, self.base_layer, scales, p, generators, *weights)
        out = self.base_layer(x)
        delta = StackedLoRA.apply(x, None, scales, p, generators, *weights)
        return out + delta.to(out.dtype)


def _targets(job: PackedJob, key: str) -> bool:
    from peft.tuners.tuners_utils import check_target_module_exists

    return bool(check_target_module_exists(job.lora_config(), key))


@dataclass
class Pack:
    """A packed model: its jobs, their shared context, each job's LoRA parameters and the wrapped layers."""

    model: nn.Module
    jobs: list[PackedJob]
    ctx: PackContext
    params: list[list[nn.Parameter]] = field(default_factory=list)
    layers: dict[str, MultiLoRA] = field(default_factory=dict)  # module path in the HF model -> layer


def pack_model(model: nn.Module, jobs: list[PackedJob]) -> Pack:
    """Freeze `model` (a HF causal LM) and wrap every Linear that at least one job targets in a MultiLoRA.

    Target matching is PEFT's own (check_target_module_exists with the job's LoraConfig), modules in
    `named_modules` order so each job's init replays its solo PEFT init (see the module docstring). -> the pack,
    with each job's LoRA parameters (`params[j]`); its optimizer and schedule are the caller's (launcher.pack:
    the ones its TrainingArguments make, sweeps.pack_train.build_optimizer)."""
    for p in model.parameters():
        p.requires_grad_(False)
    ctx = PackContext(jobs)
    generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
    pack = Pack(model=model, jobs=jobs, ctx=ctx)
    for key, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):  # bitsandbytes Linear4bit subclasses nn.Linear
            continue
        wanted = [j for j, job in enumerate(jobs) if _targets(job, key)]
        if not wanted:
            continue
        layer = MultiLoRA(module, ctx)
        for j in wanted:
            layer.add_job(j, jobs[j], generators[j])
        parent_name, _, child = key.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        pack.layers[key] = layer
    for j, job in enumerate(jobs):
        params = [p for layer in pack.layers.values() if str(j) in layer.lora_A
                  for p in (layer.lora_A[str(j)].weight, layer.lora_B[str(j)].weight)]
        if not params:
            raise ValueError(f"job {j} targets no Linear module of the model ({job.target_modules})")
        pack.params.append(params)
    return pack


def concat_rows(batches: list[dict | None], pad_token_id: int) -> tuple[dict, list[int]]:
    """Each job's micro-batch (None: the job takes no part in this forward) right-padded to the longest and
    stacked along the batch dim. Padding-free rows (position_ids, no attention mask) are padded with
    position_ids 0: each pad token its own one-token document that no real token attends to (as TRL's collator
    pads); padded rows get attention 0. Labels -100 on padding: never trained."""
    present = [b for b in batches if b is not None]
    width = max(b["input_ids"].shape[1] for b in present)
    padding_free = "position_ids" in present[0] and "attention_mask" not in present[0]

    def pad(t, value):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    out = {"input_ids": torch.cat([pad(b["input_ids"], pad_token_id) for b in present]),
           "labels": torch.cat([pad(b["labels"], -100) for b in present])}
    if padding_free:
        out["position_ids"] = torch.cat([pad(b["position_ids"], 0) for b in present])
    else:
        out["attention_mask"] = torch.cat([pad(b["attention_mask"], 0) for b in present])
    return out, [0 if b is None else b["input_ids"].shape[0] for b in batches]


def summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of the next-token NLL over the trained tokens (labels shifted by one, -100 ignored), fp32, and their
    count: what TRL's loss sums before dividing by num_items_in_batch."""
    shift = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), shift.reshape(-1),
                                            ignore_index=-100, reduction="sum")
    return nll, int(shift.ne(-100).sum())


LOGIT_ELEMENTS = 2**28  # logits per chunk of the output projection: 1 GiB in fp32


def block_nlls(model, merged: dict, counts: list[int], host_labels: torch.Tensor | None = None
               ) -> list[tuple[torch.Tensor, int] | None]:
    """Each job block's (rows counts[k] of the batch) summed next-token NLL over its trained tokens, and their count;
    None for a job with no rows. `host_labels`: the same labels still on the CPU, where the trained positions are
    found without a GPU sync (finding them on the device waits for it).

    The decoder runs once over all rows; the output projection then runs only at each block's trained positions,
    a chunk of at most LOGIT_ELEMENTS logits at a time, recomputed in backward (torch.utils.checkpoint): no job's
    full logits are held (a 4-job Qwen2 micro-batch's would be 10 GB in fp32; a solo run's TRL fused LM head
    holds none either). Per token the same linear, fp32 upcast and cross-entropy as the full-logits path. Models
    whose head does more than a linear (logit soft-capping or scaling) and a head some job trains in full
    (PackedHead) take the full-logits path."""
    inputs = {k: v for k, v in merged.items() if k != "labels"}
    labels = merged["labels"]
    head = model.get_output_embeddings()
    config = model.config
    plain = (type(head) is torch.nn.Linear and not getattr(config, "final_logit_softcapping", None)
             and getattr(config, "logit_scale", None) in (None, 1, 1.0))
    out, start = [], 0
    if not plain:
        logits = model(**inputs).logits
        for n in counts:
            out.append(summed_nll(logits[start:start + n], labels[start:start + n]) if n else None)
            start += n
        return out
    hidden = model.get_decoder()(**inputs).last_hidden_state
    chunk = max(1, LOGIT_ELEMENTS // head.out_features)
    for n in counts:
        if not n:
            out.append(None)
            continue
        h = hidden[start:start + n, :-1].reshape(-1, hidden.shape[-1])
        target = labels[start:start + n, 1:].reshape(-1)
        source = target if host_labels is None else host_labels[start:start + n, 1:].reshape(-1)
        trained = to_device(source.ne(-100).nonzero().squeeze(1), target.device)
        h, target = h.index_select(0, trained), target.index_select(0, trained)
        nll = hidden.new_zeros((), dtype=torch.float32)
        for c in range(0, target.numel(), chunk):
            if torch.is_grad_enabled():
                nll = nll + torch.utils.checkpoint.checkpoint(_chunk_nll, h[c:c + chunk], target[c:c + chunk],
                                                              head.weight, head.bias, use_reentrant=False)
            else:
                nll = nll + _chunk_nll(h[c:c + chunk], target[c:c + chunk], head.weight, head.bias)
        out.append((nll, int(trained.numel())))
        start += n
    return out


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A host tensor onto `device` without waiting for the GPU: from pinned memory, asynchronously (a copy from
    pageable memory makes the host wait until the GPU has run everything queued before it, once per forward)."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _chunk_nll(h, target, weight, bias):
    logits = torch.nn.functional.linear(h, weight, bias)
    return torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum")


def step_jobs(model, ctx: PackContext, steps: dict[int, list[dict]], params, optimizers, schedulers, max_grad_norms,
              pad_token_id: int, device, autocast=contextlib.nullcontext) -> tuple[dict[int, float], dict[int, float]]:
    """One optimizer step of every job in `steps` (job -> its micro-batches; `params`, `optimizers`, `schedulers`,
    `max_grad_norms` indexed by job): the k-th forward takes every job's k-th micro-batch; job j's loss is its
    summed NLL over num_items_in_batch (the trained tokens of all its micro-batches of this step), so the
    accumulated gradient is its solo run's; then per job, in HF's Trainer's order: clipping (a norm > 0), its
    optimizer, its scheduler. -> (the step's loss per job, the gradient norm per clipped job).

    The host reads the losses and gradient norms once per optimizer step, not per micro-batch (each read waits
    for the GPU): a job whose loss is not finite still runs its backward, with its loss replaced by 0 (each job's
    gradients flow only through its own rows and its own LoRA weights, so nothing of it reaches another job), and
    is then left out of the optimizer step (its gradients dropped) and returned as NaN."""
    model.train()
    items = {j: sum(trained_tokens(b) for b in batches) for j, batches in steps.items()}
    loss = {j: [] for j in steps}
    for k in range(max(len(b) for b in steps.values())):
        batches = [steps[j][k] if j in steps and k < len(steps[j]) else None for j in range(len(ctx.jobs))]
        if all(b is None for b in batches):
            continue
        host, counts = concat_rows(batches, pad_token_id)
        merged = {key: to_device(v, device) for key, v in host.items()}
        with ctx.packed(counts), autocast():
            scored = block_nlls(model, merged, counts, host["labels"])
        terms = []
        for j, job in enumerate(scored):
            if job is not None:
                job_loss = job[0] / max(items[j], 1)
                loss[j].append(job_loss.detach())
                terms.append(torch.where(torch.isfinite(job_loss), job_loss, torch.zeros_like(job_loss)))
        if terms:
            torch.stack(terms).sum().backward()
    jobs = list(steps)
    norms = {j: torch.nn.utils.clip_grad_norm_(params[j], max_grad_norms[j]) for j in jobs
             if max_grad_norms[j] and max_grad_norms[j] > 0}
    read = iter(torch.stack([torch.stack(loss[j]).sum().float() for j in jobs]
                            + [norms[j].float() for j in jobs if j in norms]).tolist())
    losses = {j: next(read) for j in jobs}
    norms = {j: next(read) for j in jobs if j in norms}
    for j in jobs:
        if not math.isfinite(losses[j]):
            for p in params[j]:
                p.grad = None
            continue
        optimizers[j].step()
        schedulers[j].step()
        optimizers[j].zero_grad(set_to_none=True)
    return losses, norms


def packed_step(pack: Pack, batches: list[dict[str, torch.Tensor]], optimizers, schedulers, pad_token_id: int = 0
                ) -> list[float]:
    """One optimizer step of every job of `pack`, `batches[j]` job j's one micro-batch (input_ids, attention_mask,
    labels; right padding), `optimizers[j]` / `schedulers[j]` its own: step_jobs. -> each job's loss."""
    if len(batches) != len(pack.jobs):
        raise ValueError(f"{len(batches)} micro-batches for {len(pack.jobs)} jobs")
    device = next(p for ps in pack.params for p in ps).device
    losses, _ = step_jobs(pack.model, pack.ctx, {j: [b] for j, b in enumerate(batches)}, pack.params,
                          optimizers, schedulers, [job.max_grad_norm for job in pack.jobs], pad_token_id, device)
    return [losses[j] for j in range(len(batches))]


def job_state_dict(pack: Pack, j: int) -> dict[str, torch.Tensor]:
    """A copy (a snapshot, not views of the live parameters) of job j's adapter under PEFT's saved key names
    (`base_model.model.<module>.lora_A.weight`)."""
    out = {}
    for key, layer in pack.layers.items():
        if str(j) in layer.lora_A:
            out[f"base_model.model.{key}.lora_A.weight"] = layer.lora_A[str(j)].weight.detach().to("cpu", copy=True)
            out[f"base_model.model.{key}.lora_B.weight"] = layer.lora_B[str(j)].weight.detach().to("cpu", copy=True)
    return out


def save_job_adapter(pack: Pack, j: int, directory: str | Path) -> Path:
    """Write job j's adapter as PEFT writes one (weights + LoraConfig), so PeftModel.from_pretrained loads it
    and chat/evaluate/export see an ordinary run's adapter."""
    from peft.utils.constants import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(job_state_dict(pack, j), str(directory / SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})
    name = getattr(getattr(pack.model, "config", None), "_name_or_path", None)
    pack.jobs[j].lora_config(base_model_name_or_path=name).save_pretrained(str(directory))
    return directory
