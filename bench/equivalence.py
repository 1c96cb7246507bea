"""GPU equivalence: every speed lever medchat's run plan can switch on, against the plain reference, on the same batches.

    python bench/equivalence.py --shape mistral7b --out bench/results/equivalence_7b.json    # one GPU
    python bench/equivalence.py --shape tiny --out bench/results/equivalence_tiny.json       # + quant, bias, lm_head, DPO/ORPO
    python bench/equivalence.py --shape tiny --steps 3 --setups ref,fused                    # CPU smoke (fp32)

The reference is the plainest way to compute a QLoRA step: PEFT's own LoRA forward, one document per row padded to
the micro-batch's longest (sdpa, its causal + padding mask: every document attends to itself only), no Liger, the
adapter in fp32 under bf16 autocast, no checkpointing, `torch.optim.AdamW(foreach=False, fused=False)`, the config's
rows per micro-batch. Each lever setup changes one thing (or, for `defaults`, exactly what `medchat.plan.resolve`
chooses on this machine) and sees the same documents in the same optimizer steps:

- batches: random token ids with the prompt/answer lengths of real iCliniq rows (bench/icliniq_lengths.json), the
  prompt masked out of the loss; packed first-fit-decreasing into `max_length` bins, `rows x accumulation` bins an
  optimizer step. Packed setups give TRL's padding-free collator a micro-batch's documents (one row, position_ids
  restarting per document: per-document attention from position_ids, as medchat trains); padded setups give TRL's
  padded collator the same documents as rows.
- loss: the model's own loss with `num_items_in_batch` = the optimizer step's trained tokens, summed over the step's
  micro-batches (what the Trainer computes), so any split of a step into micro-batches computes the same sum.
- the levers are switched on with the functions medchat's training path uses (medchat.speed.fused_lora.fuse_lora,
  liger_kernel's `_apply_liger_kernel_to_instance` as the Trainer calls it, the model's own checkpointing switch with
  medchat's kwargs, TRL's activation-offloading context, `AdamW(fused=True)` for adamw_torch_fused,
  medchat.speed.compile.compile_layers).

Reported per setup, against its reference: the loss difference at step 0, every adapter gradient of step 1 (after
one update, when LoRA B is no longer zero) compared by cosine and relative L2 error (the worst tensor named), and
the loss trajectory over `--steps` optimizer steps (max |difference|). With dropout > 0 two runs draw different
masks (PEFT from the global CUDA generator, fused LoRA from its own seeds): those are compared against the noise
floor, the same reference run twice with two dropout seeds.

Tolerances (stated before measuring; bf16 autocast on a GPU):
- dropout 0: |loss difference| at step 0 <= 1e-2, every adapter gradient cosine >= 0.999 and relative L2 <= 5e-2
  at step 1, max |loss difference| over the trajectory <= 2e-2;
- dropout > 0: max |loss difference| over the trajectory <= 2 x the noise floor's + 1e-2;
- fp32 (CPU smoke, or `--precision fp32` on a GPU): 1e-4 for losses, cosine >= 0.99999, rel L2 <= 1e-3.

A second verdict, "pass vs floor", was stated after the first H100 record (bench/RESULTS.md, issue 19) and before
any measurement with it: the rounding floor is the worst gradient agreement of the setups that are exact in real
arithmetic (padded -> packed rows, one micro-batch -> two) in the same run; a dropout-0 lever passes when its worst
cosine is no further from 1 than twice the floor's, its worst relative L2 at most twice the floor's, and its
losses within the fixed tolerances above (floor_verdicts()).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import random
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

CUDA = torch.cuda.is_available()
BF16 = CUDA  # --precision fp32 turns bf16 autocast off (and loads the model and 4-bit compute in fp32)
TOL_BF16 = dict(loss0=1e-2, cos=0.999, rel=5e-2, traj=2e-2)
TOL_FP32 = dict(loss0=1e-4, cos=0.99999, rel=1e-3, traj=1e-4)


@dataclass(frozen=True)
class Setup:
    """One way of computing the same optimizer steps. `ref` names the setup it is compared with."""

    name: str
    ref: str | None = "ref"
    fused: bool = False
    packed: bool = False
    attention: str = "sdpa"
    liger: bool = False
    fused_adamw: bool = False
    micro_rows: int | None = None  # rows (bins) per micro-batch; None: the config's
    checkpointing: str = "none"  # none | full | every2
    offload: bool = False
    compile: bool = False  # regional compile; with fixed_shape for that one shape (dynamic=False), else dynamic
    inductor: tuple = ()  # Inductor options of the compiled setups, as (name, value) pairs
    fixed_shape: bool = False  # every micro-batch padded to rows x max_length tokens (trainer.fixed_shape)
    dropout: float = 0.0
    dropout_seed: int = 0
    quant: str = "nf4"
    bias: str = "none"
    lm_head: bool = False
    note: str = ""


# ----- the model and the batches ---------------------------------------------------------------------------

def compose(overrides: list[str]):
    from qlora_throughput import compose as bench_compose

    return bench_compose(overrides)


def base_config(shape: str, model_dir: Path | None):
    common = ["tracker=none", "trainer.eval_strategy=no"]
    if shape == "mistral7b":
        return compose(["model=mistral7b", "lora=r32", "quant=nf4", f"model.name_or_path={model_dir}",
                        "model.chat_template=null"] + common)
    # the tiny offline model as `python train.py` trains it, on a GPU in bf16 like the big one
    return compose(common + (["model.dtype=bfloat16"] if CUDA else []))


def tiny_qwen2_dir(work: Path) -> Path:
    """A 2-layer Qwen2 with random weights: q/k/v projections with biases, for lora.bias=all."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from medchat.config import TinyModelConfig
    from medchat.tiny import tiny_model_dir

    out = work / "qwen2-tiny"
    if not (out / "config.json").exists():
        tok = AutoTokenizer.from_pretrained(tiny_model_dir(TinyModelConfig()))
        torch.manual_seed(0)
        Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(out)
        tok.save_pretrained(out)
    return out


def documents(lengths_file: Path, vocab: int, max_length: int, n: int, seed: int = 0) -> list[dict]:
    """n rows with real prompt/answer token counts (cut to max_length), random ids above the special tokens."""
    pairs = json.loads(lengths_file.read_text())["prompt_answer_tokens"]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, a = pairs[rng.randrange(len(pairs))]
        p, a = min(p, max_length // 2), min(a, max_length - min(p, max_length // 2))
        ids = [rng.randrange(10, min(vocab, 2000)) for _ in range(p + a)]
        out.append({"input_ids": ids, "labels": [-100] * p + ids[p:]})
    return out


def pack(docs: list[dict], max_length: int) -> list[list[dict]]:
    """First-fit-decreasing bins of at most max_length tokens (TRL's BFD packs the same way)."""
    bins: list[list[dict]] = []
    room: list[int] = []
    for d in sorted(docs, key=lambda d: -len(d["input_ids"])):
        n = len(d["input_ids"])
        k = next((i for i, r in enumerate(room) if r >= n), None)
        if k is None:
            bins.append([d])
            room.append(max_length - n)
        else:
            bins[k].append(d)
            room[k] -= n
    return bins


def step_batches(cfg, steps: int, vocab: int, lengths: Path) -> list[list[dict]]:
    """Each optimizer step's bins: rows x accumulation bins of max_length, from one fixed list of documents."""
    t = cfg.trainer
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps
    docs = documents(lengths, vocab, t.max_length, n=per_step * (steps + 1) * 6)
    bins = pack(docs, t.max_length)
    random.Random(1).shuffle(bins)
    need = per_step * (steps + 1)
    if len(bins) < need:
        raise SystemExit(f"only {len(bins)} bins for {need}: more documents needed")
    return [bins[i * per_step:(i + 1) * per_step] for i in range(steps + 1)]


def collate(bins: list[list[dict]], packed: bool, pad_id: int, device, fixed_tokens: int | None = None) -> dict:
    """TRL's collator, as the SFT trainer uses it (fixed_tokens: its pad_to_multiple_of under trainer.fixed_shape)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    docs = [d for b in bins for d in b]
    batch = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=packed, pad_to_multiple_of=fixed_tokens)(docs)
    keep = ("input_ids", "labels", "position_ids", "attention_mask")  # what sdpa/flex use of TRL's batch
    return {k: v.to(device) for k, v in batch.items() if k in keep}


# ----- one setup ---------------------------------------------------------------------------------------------

def build(setup: Setup, cfg, base, targets):
    """The base with a fresh LoRA adapter (same seed for every setup), the lever switches applied."""
    from medchat import modeling, training
    from medchat.speed.compile import compile_layers
    from medchat.speed.fused_lora import fuse_lora

    base.set_attn_implementation(setup.attention)
    lora = replace_lora(cfg.lora, dropout=setup.dropout, bias=setup.bias, lm_head=setup.lm_head)
    torch.manual_seed(1234)
    model = modeling.apply_lora(base, modeling.lora_config(lora, targets))
    training.keep_adapter_fp32(model)
    if setup.fused:
        fuse_lora(model)
    if setup.liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model.get_base_model())
    if setup.checkpointing != "none":
        kwargs = {"use_reentrant": False}
        every = 2 if setup.checkpointing == "every2" else 1
        inner = model.get_base_model()
        if hasattr(inner, "activation_checkpointing_enable"):
            inner.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs, every_n_layers=every)
        elif every == 1:
            inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        else:
            inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={**kwargs, "every_n_layers": every})
    if setup.compile:
        compile_layers(model, dynamic=not setup.fixed_shape, options=dict(setup.inductor) or None)
    model.train()
    return model


def replace_lora(lora_cfg, dropout: float, bias: str, lm_head: bool):
    from omegaconf import OmegaConf

    lora = OmegaConf.create(OmegaConf.to_container(lora_cfg, resolve=True))
    lora.lora_dropout, lora.bias = dropout, bias
    if lm_head:
        lora.targets = "all_linear_lm_head"
    elif lora.targets == "all_linear_lm_head":
        lora.targets = "all_linear"
    return lora


def teardown(model):
    """The base back without the adapter or the switches (Liger's patches stay: Liger setups run last)."""
    from medchat.speed.compile import uncompile_layers

    inner = model.get_base_model()
    if getattr(inner, "is_gradient_checkpointing", False):
        inner.gradient_checkpointing_disable()
    uncompile_layers(model)
    base = model.unload()
    gc.collect()
    torch.cuda.empty_cache() if CUDA else None
    return base


def run(setup: Setup, cfg, base, targets, steps_bins, pad_id, device, point: dict | None = None, grads_at: int = 1):
    """-> {losses: [per step], grads: {name: fp32 CPU tensor} of step `grads_at` on this setup's own trajectory,
    after0: the trainable parameters after step 0's update, grads_point: step 1's gradients at `point` (the
    reference's after0; None: this setup's own after0), seconds, peak_gib}.

    Why gradients at one point: after one AdamW step every element has moved by about +-lr whatever its
    gradient's size (Adam's first step is m/sqrt(v) = sign(g)), so where bf16 rounding flips the sign of a
    near-zero gradient two setups' weights differ by 2 lr there, and their step-1 gradients differ by that, not
    by the lever. Loading the reference's weights after step 0 into every setup compares the levers'
    arithmetic alone (the first GPU call measured only the own-trajectory gradients: bench/RESULTS.md)."""
    from transformers import get_scheduler

    t = cfg.trainer
    model = build(setup, cfg, base, targets)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(t.learning_rate), weight_decay=float(t.weight_decay),
                            **({"fused": True} if setup.fused_adamw else {"foreach": False}))
    n_steps = len(steps_bins) - 1
    sched = get_scheduler(t.lr_scheduler_type, opt, num_warmup_steps=math.ceil(float(t.warmup_steps) * n_steps)
                          if float(t.warmup_steps) < 1 else int(t.warmup_steps), num_training_steps=n_steps)
    rows = setup.micro_rows or t.per_device_train_batch_size
    offload = contextlib.nullcontext()
    if setup.offload:
        from trl.models.activation_offloading import get_act_offloading_ctx_manager

        offload = get_act_offloading_ctx_manager(model=model)
    torch.manual_seed(setup.dropout_seed)
    if CUDA:
        torch.cuda.manual_seed_all(setup.dropout_seed)
        torch.cuda.reset_peak_memory_stats()
    losses, grads, after0 = [], {}, {}
    t0 = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if BF16 else contextlib.nullcontext()

    def forward_backward(bins) -> float:
        micro = [bins[i:i + rows] for i in range(0, len(bins), rows)]
        n_items = sum(sum(1 for x in d["labels"][1:] if x != -100) for b in bins for d in b)
        total = 0.0
        for mb in micro:
            batch = collate(mb, setup.packed, pad_id, device, rows * t.max_length if setup.fixed_shape else None)
            with offload:
                with autocast:
                    loss = model(**batch, num_items_in_batch=torch.tensor(n_items, device=device)).loss
                loss.backward()
            total += loss.detach().float().item()
        return total

    def snapshot_grads() -> dict:
        return {n: p.grad.detach().float().cpu().clone() for n, p in zip(names, params) if p.grad is not None}

    for step, bins in enumerate(steps_bins[:n_steps]):
        losses.append(forward_backward(bins))
        if step == grads_at:
            grads = snapshot_grads()
        torch.nn.utils.clip_grad_norm_(params, float(t.max_grad_norm))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step == 0:
            after0 = {n: p.detach().cpu().clone() for n, p in zip(names, params)}
    if CUDA:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if CUDA else None
    grads_point = {}
    if setup.dropout == 0:  # with dropout, two setups' masks differ anyway
        with torch.no_grad():
            for n, p in zip(names, params):
                p.copy_((point or after0)[n].to(p.device, p.dtype))
        forward_backward(steps_bins[grads_at])
        grads_point = snapshot_grads()
    base = teardown(model)
    del opt
    return base, {"losses": losses, "grads": grads, "after0": after0, "grads_point": grads_point,
                  "seconds": round(seconds, 1), "peak_gib": round(peak, 2) if peak else None}


def grad_agreement(mine: dict, ref: dict) -> dict:
    """The worst cosine and relative L2 error over the adapter gradients both have, and the names only one has."""
    worst_cos, worst_rel = (None, 2.0), (None, -1.0)
    for name, g in ref.items():
        h = mine.get(name)
        if h is None:
            continue
        cos = torch.nn.functional.cosine_similarity(g.flatten().double(), h.flatten().double(), dim=0).item() \
            if g.norm() > 0 and h.norm() > 0 else float(torch.equal(g, h))
        rel = ((h - g).norm() / g.norm()).item() if g.norm() > 0 else float((h - g).norm() > 0)
        if cos < worst_cos[1]:
            worst_cos = (name, cos)
        if rel > worst_rel[1]:
            worst_rel = (name, rel)
    return {"tensors": len(ref), "missing": sorted(set(ref) ^ set(mine)), "worst_cos": worst_cos[1],
            "worst_cos_tensor": worst_cos[0], "worst_rel": worst_rel[1], "worst_rel_tensor": worst_rel[0]}


def compare(result: dict, ref: dict, tol: dict, noise: float | None, dropout: float) -> dict:
    out = {"loss0": result["losses"][0], "loss0_ref": ref["losses"][0],
           "loss0_diff": abs(result["losses"][0] - ref["losses"][0]),
           "traj_max_diff": max(abs(a - b) for a, b in zip(result["losses"], ref["losses"])),
           "final_loss": result["losses"][-1], "final_loss_ref": ref["losses"][-1]}
    own = grad_agreement(result["grads"], ref["grads"])
    out.update({f"own_trajectory_{k}": v for k, v in own.items()})
    at_point = grad_agreement(result["grads_point"], ref["grads_point"]) if result["grads_point"] else own
    out.update(grad_tensors=at_point["tensors"], grads_missing=at_point["missing"], worst_cos=at_point["worst_cos"],
               worst_cos_tensor=at_point["worst_cos_tensor"], worst_rel=at_point["worst_rel"],
               worst_rel_tensor=at_point["worst_rel_tensor"], grads_compared="at the reference's weights after step 0"
               if result["grads_point"] else "on each setup's own trajectory (dropout: masks differ)")
    worst_cos, worst_rel, missing = (at_point["worst_cos_tensor"], at_point["worst_cos"]), \
        (at_point["worst_rel_tensor"], at_point["worst_rel"]), at_point["missing"]
    if dropout > 0:
        limit = 2 * (noise or 0.0) + 1e-2
        out["traj_limit"] = limit
        out["pass"] = out["traj_max_diff"] <= limit
    else:
        out["pass"] = (out["loss0_diff"] <= tol["loss0"] and worst_cos[1] >= tol["cos"] and worst_rel[1] <= tol["rel"]
                       and out["traj_max_diff"] <= tol["traj"] and not missing)
    return out


# ----- the setups --------------------------------------------------------------------------------------------

def setups_for(shape: str, plan, packed_levers: bool, ref_micro_rows: int | None = None) -> list[Setup]:
    """The levers; `defaults` is what the plan chooses here. Liger and compile setups last (Liger patches stay).

    packed_levers: each single lever is measured on packed rows with sdpa (`packed_sdpa`, itself compared with
    the padded reference) instead of padded rows: on the 7B shape a padded step computes about three times the
    tokens, and the levers other than packing do not depend on the row layout. `defaults` and `packed_flex`
    are always compared with the padded reference itself. ref_micro_rows: the padded reference's documents of
    fewer bins a micro-batch (the same optimizer step: the loss is normalised by the step's tokens), where
    the config's micro-batch padded would not fit in memory without checkpointing."""
    from medchat.speed.compile import EAGER_ROUNDING

    b = plan.batch
    ckpt = "none" if not plan.checkpointing.enabled else (
        "full" if plan.checkpointing.every_n_layers == 1 else "every2")
    # the plan's eager levers; the compile_fixed* setups add what trainer.compile=auto now adds where measured
    defaults = dict(fused=plan.fused_lora, packed=True, attention=plan.model.train_attention, liger=plan.liger,
                    fused_adamw=plan.optim == "adamw_torch_fused", micro_rows=b.per_device_train_batch_size,
                    checkpointing=ckpt, offload=b.activation_offloading)
    lv = dict(ref="packed_sdpa", packed=True) if packed_levers else {}
    out = [
        Setup("ref", ref=None, micro_rows=ref_micro_rows,
              note=f"padded rows, {ref_micro_rows} bins' documents a micro-batch" if ref_micro_rows else ""),
        Setup("packed_sdpa", packed=True),
        Setup("packed_flex", packed=True, attention="flex_attention"),
        Setup("fused", fused=True, **lv),
        Setup("fused_adamw", fused_adamw=True, **lv),
        Setup("micro_batch_half", micro_rows=max(1, plan.batch.per_device_train_batch_size // 2), **lv,
              note="half the rows per micro-batch, twice the accumulation: the same optimizer-step batch"),
        Setup("ckpt_full", checkpointing="full", **lv),
        Setup("ckpt_every2", checkpointing="every2", **lv),
        Setup("fused_ckpt", fused=True, checkpointing="full", **lv),
        Setup("fused_offload", fused=True, checkpointing="full", offload=True, **lv),
        Setup("ref_d05", ref=None, dropout=0.05, dropout_seed=1, packed=packed_levers),
        Setup("ref_d05_seed2", ref="ref_d05", dropout=0.05, dropout_seed=2, packed=packed_levers,
              note="the noise floor of dropout 0.05"),
        Setup("fused_d05", ref="ref_d05", fused=True, dropout=0.05, dropout_seed=1, packed=packed_levers),
    ]
    if shape == "tiny":
        out += [
            Setup("ref_none", ref=None, quant="none"),
            Setup("fused_none", ref="ref_none", fused=True, quant="none"),
            Setup("ref_int8", ref=None, quant="int8"),
            Setup("fused_int8", ref="ref_int8", fused=True, quant="int8", note="int8 layers left to PEFT"),
            Setup("ref_lm_head", ref=None, lm_head=True),
            Setup("fused_lm_head", ref="ref_lm_head", fused=True, lm_head=True),
            Setup("ref_qwen2_bias", ref=None, bias="all"),
            Setup("fused_qwen2_bias", ref="ref_qwen2_bias", fused=True, bias="all"),
        ]
    out += [
        Setup("defaults", **defaults, note="what medchat.plan.resolve chose on this machine, dropout 0"),
        Setup("defaults_d05", ref="ref_d05", **defaults, dropout=0.05, dropout_seed=1,
              note="the plan's choices at the default dropout 0.05"),
        Setup("liger", liger=True, **lv),
        Setup("compile_sdpa", compile=True, liger=plan.liger, note="regional compile (dynamic shapes), padded rows"),
        # issue 23: the defaults on one fixed shape (padding masked out: exact), then compiled for it. (Regional
        # compile of flex_attention on dynamic shapes fails in Inductor, torch 2.11: bench/RESULTS.md.)
        Setup("fixed", **defaults, fixed_shape=True, note="the plan's choices, every micro-batch rows x max_length"),
        Setup("compile_fixed", **defaults, fixed_shape=True, compile=True,
              note="the plan's choices on one fixed shape, decoder layers compiled for it (dynamic=False)"),
        # Inductor keeps fused intermediates in fp32 where eager rounds each operator's output to bf16; this
        # setup makes it round as eager does (torch._inductor.config.emulate_precision_casts): what medchat
        # compiles with since call 13 (medchat.speed.compile.EAGER_ROUNDING); compile_fixed is Inductor's own
        Setup("compile_fixed_eager_casts", **defaults, fixed_shape=True, compile=True,
              inductor=tuple(EAGER_ROUNDING.items()),
              note="compiled as compile_fixed, Inductor rounding intermediates to bf16 as eager does"),
        Setup("compile_fixed_d05", ref="ref_d05", **defaults, fixed_shape=True, compile=True, dropout=0.05,
              inductor=tuple(EAGER_ROUNDING.items()),
              dropout_seed=1, note="compiled, at the default dropout 0.05"),
    ]
    return out


def load_base(cfg, shape: str, quant: str, path: str | None = None):
    from medchat import modeling
    from medchat.config import QuantConfig
    from medchat.hardware import detect
    from medchat.plan import model_plan
    from omegaconf import OmegaConf

    m = OmegaConf.to_object(cfg.model)
    if path:
        m.name_or_path = path
    q = QuantConfig(mode=quant) if quant != "nf4" else OmegaConf.to_object(cfg.quant)
    if not BF16:
        m.dtype, q.compute_dtype = "float32", "float32"
    mp = model_plan(m, q, detect(), modeling.model_path(m) if not path else path)
    return modeling.load_model(mp)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=("mistral7b", "tiny"), default="tiny")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--setups", default="all", help="comma list of setup names (their references are added)")
    p.add_argument("--work", type=Path, default=Path("/tmp/medchat-equivalence"))
    p.add_argument("--lengths", type=Path, default=ROOT / "bench" / "icliniq_lengths.json")
    p.add_argument("--out", type=Path)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                   help="fp32: no autocast, model and 4-bit compute in fp32 (bf16 rounding out of the picture)")
    p.add_argument("--ref-micro-rows", type=int, default=None, help="the padded reference's bins a micro-batch")
    p.add_argument("--packed-levers", action="store_true", help="single levers on packed sdpa rows (see setups_for)")
    p.add_argument("--no-preference", dest="preference", action="store_false", help="tiny: skip DPO/ORPO")
    p.add_argument("--budget-seconds", type=float, default=1e9, help="skip setups once this much time has passed")
    a = p.parse_args()
    t_start = time.time()
    a.work.mkdir(parents=True, exist_ok=True)
    from medchat import modeling
    from medchat.plan import resolve
    from qlora_throughput import prepare_model, versions

    model_dir = prepare_model(a.work, "mistral7b") if a.shape == "mistral7b" else None
    cfg = base_config(a.shape, model_dir)
    plan = resolve(cfg)
    tokenizer = modeling.load_tokenizer(cfg.model)
    global BF16
    BF16 = CUDA and a.precision == "bf16"
    tol = TOL_BF16 if BF16 else TOL_FP32
    device = torch.device("cuda", 0) if CUDA else torch.device("cpu")
    all_setups = setups_for(a.shape, plan, a.packed_levers, a.ref_micro_rows)
    if a.setups != "all":
        wanted = set(a.setups.split(","))
        by_name = {s.name: s for s in all_setups}
        for name in list(wanted):
            s = by_name[name]
            while s.ref:
                wanted.add(s.ref)
                s = by_name[s.ref]
            if s.dropout > 0 and "ref_d05_seed2" in by_name:
                wanted.add("ref_d05_seed2")
        all_setups = [s for s in all_setups if s.name in wanted]
    vocab = len(tokenizer)
    bins = step_batches(cfg, a.steps, vocab, a.lengths)
    record = {"shape": a.shape, "steps": a.steps, "precision": "bf16 autocast" if BF16 else "fp32",
              "versions": versions(), "tolerances": tol,
              "plan": plan.describe(), "config_batch": f"{cfg.trainer.per_device_train_batch_size} rows x "
              f"{cfg.trainer.gradient_accumulation_steps} accumulation x {cfg.trainer.max_length} tokens",
              "documents_per_step": [sum(len(b) for b in s) for s in bins[:a.steps]][:5],
              "setups": {}}
    targets = list(plan.target_modules)

    def matmul_precision() -> dict:  # whether fp32 matmuls ran as TF32 (it would blur the fp32 comparison)
        return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
                "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    bases, results = {}, {}

    def base_for(s: Setup):
        key = "qwen2" if s.bias != "none" else s.quant
        if key not in bases:
            for k in list(bases):  # one base on the GPU at a time
                del bases[k]
            gc.collect()
            torch.cuda.empty_cache() if CUDA else None
            path = str(tiny_qwen2_dir(a.work)) if key == "qwen2" else None
            bases[key] = load_base(cfg, a.shape, "nf4" if key == "qwen2" else s.quant, path)
        return key, bases[key]

    def save():
        record["matmul_precision_at_end"] = matmul_precision()
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(record, indent=2) + "\n")

    for s in all_setups:
        if time.time() - t_start > a.budget_seconds:
            record["setups"][s.name] = {"skipped": "time budget"}
            continue
        key, base = base_for(s)
        these_targets = targets if key in ("nf4", "none", "int8") else ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                         "gate_proj", "up_proj", "down_proj"]
        print(f"== {s.name} ({s.note or s})", flush=True)
        try:
            point = results[s.ref]["after0"] if s.ref in results and s.dropout == 0 else None
            bases[key], res = run(s, cfg, base, these_targets, bins, tokenizer.pad_token_id, device, point)
        except Exception as e:  # a lever that fails is recorded, and the rest still run
            traceback.print_exc()
            record["setups"][s.name] = {"error": f"{type(e).__name__}: {str(e)[:400]}", "setup": s.__dict__}
            bases.pop(key, None)
            gc.collect()
            torch.cuda.empty_cache() if CUDA else None
            save()
            continue
        if s.bias != "none" or s.lm_head:
            # PEFT's unload keeps what these trained (the base biases; lm_head's trained copy): a fresh base next
            bases.pop(key, None)
        results[s.name] = res
        entry = {"setup": {k: v for k, v in s.__dict__.items()}, "losses": [round(x, 6) for x in res["losses"]],
                 "seconds": res["seconds"], "peak_gib": res["peak_gib"]}
        if s.ref and s.ref in results:
            noise = None
            if s.dropout > 0 and "ref_d05_seed2" in results and s.name != "ref_d05_seed2":
                noise = max(abs(x - y) for x, y in zip(results["ref_d05_seed2"]["losses"], results["ref_d05"]["losses"]))
            entry.update(compare(res, results[s.ref], tol, noise, s.dropout))
            print(f"   loss0 diff {entry['loss0_diff']:.2e}  grad cos >= {entry['worst_cos']:.6f} "
                  f"({entry['worst_cos_tensor']})  rel L2 <= {entry['worst_rel']:.2e}  "
                  f"trajectory max diff {entry['traj_max_diff']:.2e}  pass={entry['pass']}", flush=True)
        else:
            print(f"   losses {res['losses'][0]:.4f} -> {res['losses'][-1]:.4f} in {res['seconds']} s", flush=True)
        record["setups"][s.name] = entry
        save()
    if a.shape == "tiny" and a.preference:
        bases.clear()
        gc.collect()
        for stage in ("dpo", "orpo"):
            if time.time() - t_start > a.budget_seconds:
                record["preference"] = {"skipped": "time budget"}
                break
            try:
                record.setdefault("preference", {})[stage] = preference(stage, a, tokenizer, tol)
            except Exception as e:
                traceback.print_exc()
                record.setdefault("preference", {})[stage] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
            save()
    floor_verdicts(record)
    record["seconds"] = round(time.time() - t_start, 1)
    save()
    print(markdown(record))
    return 0


FLOOR_SETUPS = ("packed_sdpa", "micro_batch_half")  # exact in real arithmetic: what rounding alone moves


def floor_verdicts(record: dict) -> None:
    """The second verdict, stated before the measurement it was written for (after the first H100 record,
    bench/RESULTS.md, issue 19): the rounding floor is the worst gradient agreement among the setups that are
    exact in real arithmetic (padded -> packed rows; one micro-batch -> two), measured in the same run; a
    dropout-0 lever passes it when its worst cosine is no further from 1 than twice the floor's, its worst
    relative L2 error at most twice the floor's, and its losses within the fixed tolerances."""
    floor = [record["setups"][n] for n in FLOOR_SETUPS if "worst_cos" in record["setups"].get(n, {})]
    if not floor:
        return
    cos_gap = max(1 - e["worst_cos"] for e in floor)
    rel = max(e["worst_rel"] for e in floor)
    record["floor"] = {"from": [n for n in FLOOR_SETUPS if "worst_cos" in record["setups"].get(n, {})],
                       "worst_cos": 1 - cos_gap, "worst_rel": rel}
    tol = record["tolerances"]
    for e in record["setups"].values():
        if "worst_cos" in e and e["setup"]["dropout"] == 0:
            e["floor_pass"] = (1 - e["worst_cos"] <= 2 * cos_gap + 1e-12 and e["worst_rel"] <= 2 * rel + 1e-12
                               and e["loss0_diff"] <= tol["loss0"] and e["traj_max_diff"] <= tol["traj"])


def preference(stage: str, a, tokenizer, tol: dict) -> dict:
    """stage=dpo|orpo through medchat's own stage (medchat.stages.stage_for: its trainer_config and build: TRL's
    trainers on medchat's tokenized pairs) twice on the same pairs: the reference plan (sdpa, no Liger, plain
    AdamW) and the plan this machine resolves (on a GPU: flex attention, Liger, whose DPO loss TRL then computes
    with Liger's fused kernel, fused AdamW). Compared: the first step's loss and the loss trajectory (TRL logs
    one loss per step with logging_steps=1); gradients are not captured through the Trainer."""
    import datasets

    from medchat.plan import resolve
    from medchat.stages import stage_for
    from medchat.stages.base import StageData

    cfg = compose(["tracker=none", "trainer.eval_strategy=no", f"stage={stage}", "lora.lora_dropout=0",
                   f"trainer.max_steps={a.steps}", "trainer.logging_steps=1", "trainer.save_steps=100000",
                   "trainer.max_length=512"] + (["model.dtype=bfloat16"] if CUDA else []))
    docs = documents(a.lengths, len(tokenizer), 256, n=8 * a.steps + 8, seed=3)
    rows = []
    for i, d in enumerate(docs):
        p = d["labels"].index(next(x for x in d["labels"] if x != -100)) if any(x != -100 for x in d["labels"]) else 1
        other = docs[(i + 1) % len(docs)]
        q = next((k for k, x in enumerate(other["labels"]) if x != -100), 1)
        rows.append({"prompt_ids": d["input_ids"][:p], "chosen_ids": d["input_ids"][p:] + [tokenizer.eos_token_id],
                     "rejected_ids": other["input_ids"][q:] + [tokenizer.eos_token_id]})
    ds = datasets.Dataset.from_list(rows)
    medchat_stage = stage_for(cfg.stage)
    planned = medchat_stage.plan(resolve(cfg), cfg.model, cfg.dataset)  # no stage.init_from: a fresh adapter
    ref_plan = replace(planned, liger=False, optim="adamw_torch",
                       model=replace(planned.model, train_attention="sdpa"))
    out = {"plan": planned.describe(), "pairs": len(rows)}
    for name, plan in (("ref", ref_plan), ("defaults", planned)):
        args = medchat_stage.trainer_config(cfg.trainer, cfg.tracker, a.work / f"{stage}-{name}", plan)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model, trainer = medchat_stage.build(plan, cfg.lora, cfg.trainer, tokenizer, StageData(None, ds, None, {}), args, [])
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        out[name] = {"losses": losses, "seconds": round(time.perf_counter() - t0, 1),
                     "attention": plan.model.train_attention, "liger": plan.liger, "optim": plan.optim}
        del model, trainer
        gc.collect()
        torch.cuda.empty_cache() if CUDA else None
    r, d = out["ref"]["losses"], out["defaults"]["losses"]
    out["loss0_diff"] = abs(r[0] - d[0])
    out["traj_max_diff"] = max(abs(x - y) for x, y in zip(r, d))
    out["pass"] = out["loss0_diff"] <= tol["loss0"] and out["traj_max_diff"] <= tol["traj"] and len(r) == len(d)
    print(f"== {stage}: loss0 {r[0]:.4f} vs {d[0]:.4f}, trajectory max diff {out['traj_max_diff']:.2e}, "
          f"pass={out['pass']}", flush=True)
    return out


def markdown(record: dict) -> str:
    lines = [f"shape {record['shape']}, {record['steps']} optimizer steps, {record['config_batch']}; "
             f"{record['versions'].get('gpu', 'cpu')}; tolerances {record['tolerances']}", "",
             "Gradients of step 1 at the reference's weights after step 0 (dropout 0); the own-trajectory column "
             "is each setup's step-1 gradient on its own trajectory (see run()).", "",
             "| setup | vs | loss step 0 | diff step 0 | worst grad cosine (tensor) | worst rel L2 | own-trajectory "
             "cosine | max traj diff | s | peak GiB | pass | pass vs floor |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|"]
    if record.get("floor"):
        lines.insert(2, f"Rounding floor (worst of {', '.join(record['floor']['from'])}): cosine "
                        f"{record['floor']['worst_cos']:.6f}, rel L2 {record['floor']['worst_rel']:.2e}.")
    for name, e in record["setups"].items():
        if "error" in e or "skipped" in e:
            lines.append(f"| {name} | | {e.get('error') or e.get('skipped')} | | | | | | | | fail | |")
            continue
        if "loss0_diff" not in e:
            lines.append(f"| {name} | (reference) | {e['losses'][0]:.4f} | | | | | | {e['seconds']} | {e['peak_gib']} | | |")
            continue
        tensor = (e["worst_cos_tensor"] or "").replace("base_model.model.", "")
        lines.append(f"| {name} | {e['setup']['ref']} | {e['loss0']:.4f} | {e['loss0_diff']:.1e} | {e['worst_cos']:.6f} "
                     f"({tensor}) | {e['worst_rel']:.1e} | {e['own_trajectory_worst_cos']:.4f} | {e['traj_max_diff']:.1e} | "
                     f"{e['seconds']} | "
                     f"{e['peak_gib']} | {'yes' if e['pass'] else 'NO'} | "
                     f"{'' if 'floor_pass' not in e else ('yes' if e['floor_pass'] else 'NO')} |")
    for stage, e in (record.get("preference") or {}).items():
        if not isinstance(e, dict) or "pass" not in e:
            lines.append(f"| {stage} | | {e} | | | | | | | | fail | |")
            continue
        lines.append(f"| {stage} (defaults: {e['defaults']['attention']}, liger {e['defaults']['liger']}, "
                     f"{e['defaults']['optim']}) | {stage} ref | {e['defaults']['losses'][0]:.4f} | {e['loss0_diff']:.1e} "
                     f"| not captured | | | {e['traj_max_diff']:.1e} | {e['defaults']['seconds']} | | "
                     f"{'yes' if e['pass'] else 'NO'} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
