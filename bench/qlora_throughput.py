"""QLoRA training throughput: medchat's own GPU path against the notebook baseline, in one run.

    python bench/qlora_throughput.py --out h100.json                          # one GPU: baseline + medchat
    python bench/qlora_throughput.py --setups all --profile medchat --out run.json   # ablations, a profile
    python bench/qlora_throughput.py --prepare-only                           # build the model files, then:
    accelerate launch --config_file conf/accelerate/ddp.yaml bench/qlora_throughput.py --setups medchat --out ddp.json
    python bench/qlora_throughput.py --shape tiny --setups baseline,medchat --steps 3 --warmup 1   # CPU smoke

The commands behind each recorded number, and the numbers: bench/RESULTS.md (raw output in bench/results/).

The model is Mistral-7B-shaped with random weights (throughput and memory do not depend on the values):
built once in bf16 on the GPU, saved, loaded through medchat's loader with NF4 double quantization and
saved again pre-quantized, so every setup loads the same 4-bit weights in seconds. Rows have the token
lengths of the real iCliniq consultations (bench/icliniq_lengths.json, made by bench/lengths.py): random
ids, the prompt masked out of the loss, the answer trained, as medchat's tokenizer output would be.

- `medchat*` setups go through medchat's own path: the run plan and the stage's TRL config as medchat.pipeline.train
  makes them (plan.resolve, stage.plan, stage.trainer_config), then medchat.pipeline.fit itself (the SFT stage's
  model, LoRA and trainer, training.run_trainer, the adapter saved), with the config composed from conf/ plus
  the overrides listed per setup; `auto` values resolve on the GPU.
- `baseline` is what the well-known QLoRA notebooks do: prepare_model_for_kbit_training (fp32 upcast of the
  non-quantized weights), reentrant checkpointing, paged AdamW 32-bit, rows padded per batch of 4, no packing.

Reported per setup: real (non-pad) tokens/s over the timed steps (after warm-up steps that absorb kernel
compilation), peak allocated GiB, model FLOP utilisation (4 x linear parameters per token: forward and
input-gradient GEMMs; the frozen base has no weight gradient) and hardware utilisation (plus the recompute
of checkpointed layers) against the bf16 matmul peak measured at the start of the same run.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

GIB = 2**30
SHAPES = {
    # Mistral-7B-v0.1 without its sliding window (rows are far shorter than 4096 tokens)
    "mistral7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768),
    "tiny": dict(vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096),
    # Qwen2-0.5B (q/k/v biases, tied embeddings): the small end of the recipes, for packed sweeps (issue 24)
    "qwen2_0_5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768),
}
QWEN2_SHAPES = ("qwen2_0_5b",)
SHAPE_OVERRIDES: dict[str, list[str]] = {}  # per shape, on top of COMMON (none yet: every shape is a LoRA r32 run)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
COMMON = ["model=mistral7b", "lora=r32", "quant=nf4", "tracker=none", "trainer.eval_strategy=no",
          "trainer.save_steps=1000000", "trainer.logging_steps=5"]
# name -> overrides on top of COMMON (and trainer.max_steps). `medchat` is the shipped defaults (4 packed
# rows of up to 1024 tokens a step, every speed choice `auto`: since call 14 that compiles the decoder layers
# where the compiled step fits the budget, medchat.speed.apply.compile_choice; `medchat_eager` is the same without
# compiling, what `medchat` measured before). Setups without Liger run before any with it: Liger patches the
# Mistral module classes process-wide.
SETUPS = {
    "baseline": None,
    "medchat_noliger": ["trainer.use_liger_kernel=false"],
    "medchat_first": [],  # = medchat, run first: absorbs flex_attention's compilations (see bench/RESULTS.md)
    "medchat": [],
    "medchat_eager": ["trainer.compile=false"],
    # = medchat with each batch's host-to-GPU copy non-blocking (see medchat_fit): the blocking copy waits for the
    # whole queue every step (3 such waits a step, results/h100_issue23_call15_host_reads.md)
    "medchat_nonblocking_copies": [],
    "medchat_unfused": ["trainer.fused_lora=false"],
    "medchat_compile": ["trainer.compile=true"],
    "medchat_sdpa": ["model.attn_implementation=sdpa"],
    "medchat_ckpt_all": ["trainer.gradient_checkpointing=true"],
    "medchat_offload": ["trainer.gradient_checkpointing=true", "trainer.activation_offloading=true"],
    "medchat_adapter_bf16": [],
    "medchat_dropout0": ["lora.lora_dropout=0"],
    "medchat_2x2048": ["trainer.per_device_train_batch_size=2", "trainer.max_length=2048",
                       "trainer.gradient_accumulation_steps=2"],
    "medchat_4x2048": ["trainer.per_device_train_batch_size=4", "trainer.max_length=2048"],
    "medchat_4x2048_eager": ["trainer.per_device_train_batch_size=4", "trainer.max_length=2048",
                             "trainer.compile=false"],
    "medchat_4x2048_unfused": ["trainer.per_device_train_batch_size=4", "trainer.max_length=2048",
                               "trainer.fused_lora=false"],
    "medchat_4x2048_compile": ["trainer.per_device_train_batch_size=4", "trainer.max_length=2048",
                               "trainer.compile=true"],
    "medchat_4x2048_ckpt_all": ["trainer.per_device_train_batch_size=4", "trainer.max_length=2048",
                                "trainer.gradient_checkpointing=true"],
    # Unsloth's two memory points (bench/RESULTS.md), as a budget: auto picks micro-batch and checkpointing
    # issue 23: one shape every step (trainer.fixed_shape), then decoder layers compiled for it (dynamic=False);
    # `_cudagraphs`: the same compiled with mode="reduce-overhead" (CUDA graphs), a bench-only switch (see
    # medchat_fit); `_d0`: LoRA dropout 0 (dropout's seeds are CPU tensors: graphs that read them skip CUDA graphs)
    "medchat_fixed": ["trainer.fixed_shape=true"],
    "medchat_compile_fixed": ["trainer.fixed_shape=true", "trainer.compile=true"],  # = trainer.compile=true (auto fixed shape)
    # compiled with Inductor's own rounding (medchat compiles with eager's, speed.compile.EAGER_ROUNDING, since
    # call 13; before it, medchat_compile_fixed measured this)
    "medchat_compile_fixed_inductor_rounding": ["trainer.fixed_shape=true", "trainer.compile=true"],
    "medchat_compile_fixed_d0": ["trainer.fixed_shape=true", "trainer.compile=true", "lora.lora_dropout=0"],
    "medchat_compile_fixed_cudagraphs_d0": ["trainer.fixed_shape=true", "trainer.compile=true", "lora.lora_dropout=0"],
    "medchat_4x2048_fixed": ["trainer.per_device_train_batch_size=4", "trainer.max_length=2048",
                             "trainer.fixed_shape=true"],
    "medchat_4x2048_compile_fixed": ["trainer.per_device_train_batch_size=4", "trainer.max_length=2048",
                                     "trainer.fixed_shape=true", "trainer.compile=true"],
    "medchat_budget6": ["trainer.memory_budget_gib=6"],
    "medchat_budget23": ["trainer.memory_budget_gib=23"],  # auto: compiled, 2 rows x 2 (since 2026-12-07)
    "medchat_budget23_eager": ["trainer.memory_budget_gib=23", "trainer.compile=false"],  # 4 rows, 11 checkpointed
    # the 23 GiB plan before 2026-12-07 (2 rows x 2 accumulation, no checkpointing: 0.45x in call 11), forced
    "medchat_budget23_split": ["trainer.memory_budget_gib=23", "trainer.micro_batch=fixed",
                               "trainer.per_device_train_batch_size=2", "trainer.gradient_accumulation_steps=2"],
    # the same split compiled (2 x 1,024 tokens a micro-batch: the compiled step's activations fit 23 GiB unsplit
    # by no plan, checkpointing compiled layers was never measured)
    "medchat_budget23_split_compile": ["trainer.memory_budget_gib=23", "trainer.micro_batch=fixed",
                                       "trainer.per_device_train_batch_size=2",
                                       "trainer.gradient_accumulation_steps=2", "trainer.compile=true"],
    # Unsloth in its own environment (bench/unsloth_throughput.py; needs --unsloth-site)
    "unsloth_padded_offload": "unsloth",
    "unsloth_padded": "unsloth",
    "unsloth_packed": "unsloth",
}


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def say(*a) -> None:
    if rank() == 0:
        print(*a, flush=True)


# ----- the machine ---------------------------------------------------------------------------------------

def matmul_peak_tflops(n: int = 8192, reps: int = 30) -> float | None:
    """Median bf16 n x n x n matmul rate on random data (CUDA events)."""
    if not torch.cuda.is_available():
        return None
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(5):
        a @ b
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "liger-kernel", "triton"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / GIB, 1)
        out["gpus"] = torch.cuda.device_count()
    return out


# ----- model files and rows ------------------------------------------------------------------------------

def prepare_model(work: Path, shape: str) -> Path:
    """Random-weight model -> work/<shape>-nf4 (pre-quantized), with medchat's tiny tokenizer beside it."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from medchat import hardware, modeling
    from medchat.config import ModelConfig, QuantConfig, TinyModelConfig
    from medchat.plan import model_plan
    from medchat.tiny import tiny_model_dir

    nf4, bf16 = work / f"{shape}-nf4", work / f"{shape}-bf16"
    if (nf4 / "config.json").exists():
        return nf4
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(TinyModelConfig()))
    if not (bf16 / "config.json").exists():
        t0 = time.time()
        qwen2 = shape in QWEN2_SHAPES
        config = (Qwen2Config if qwen2 else MistralConfig)(
            **SHAPES[shape], sliding_window=None, tie_word_embeddings=qwen2, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(0)
        with torch.device(device):
            model = (Qwen2ForCausalLM if qwen2 else MistralForCausalLM)(config).to(torch.bfloat16)
        model.save_pretrained(bf16)
        tokenizer.save_pretrained(bf16)
        del model
        say(f"built random {shape} in bf16: {time.time() - t0:.0f} s")
    t0 = time.time()
    model = modeling.load_model(model_plan(ModelConfig(dtype="bfloat16", attn_implementation="sdpa"),
                                           QuantConfig(mode="nf4"), hardware.detect(), str(bf16)))
    model.save_pretrained(nf4)
    tokenizer.save_pretrained(nf4)
    del model
    gc.collect()
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    say(f"quantized to NF4 and saved: {time.time() - t0:.0f} s")
    return nf4


def rows(lengths_file: Path, vocab: int, seed: int = 0):
    """One training row per real iCliniq row: random ids with its prompt/answer token counts."""
    import datasets

    pairs = json.loads(lengths_file.read_text())["prompt_answer_tokens"]
    rng = random.Random(seed)
    out = []
    for p, a in pairs:
        ids = [rng.randrange(10, min(vocab, 2000)) for _ in range(p + a)]  # above the special tokens
        out.append({"input_ids": ids, "assistant_masks": [0] * p + [1] * a})
    return datasets.Dataset.from_list(out)


# ----- timing --------------------------------------------------------------------------------------------

def timer_callback(warmup: int, timed: int, profile_dir: Path | None):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and real tokens at the end of steps `warmup` and `warmup + timed` (the steps between are
        timed, with no sync of the timer's own inside them); later steps (if any) are profiled."""

        def __init__(self):
            self.marks = []
            self.prof = None
            self.began = None  # time.time() when training began (the model built and placed)
            self.model_config = None
            self.adapter_dtype = None

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.began = time.time()
            if model is not None:
                self.model_config = model.config
                self.adapter_dtype = str(next(p.dtype for p in model.parameters() if p.requires_grad))

        def on_step_end(self, args, state, control, **kw):
            # Only the two boundary steps are marked (a sync there and nowhere else: the steps between run as
            # they would untimed). A log at those steps makes the trainer hand over the token count it keeps on
            # the device between logs (medchat.sft_trainer.DeferredStepMetrics); the mark is taken in on_log.
            if state.global_step in (warmup, warmup + timed):
                control.should_log = True
            if self.prof is not None and state.global_step >= state.max_steps:
                self.stop_profile(state)  # here, not at train end: the end's saves are not the step's work

        def stop_profile(self, state):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - self.prof_start
            self.prof.stop()
            write_profile(self.prof, wall, state.global_step - warmup - timed, profile_dir)
            self.prof = None

        def on_log(self, args, state, control, **kw):
            if state.global_step not in (warmup, warmup + timed) or any(s == state.global_step for s, _, _ in self.marks):
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((state.global_step, time.perf_counter(), state.num_input_tokens_seen))
            if profile_dir is not None and state.global_step == warmup + timed:
                from torch.profiler import ProfilerActivity, profile

                cuda = [ProfilerActivity.CUDA] if torch.cuda.is_available() else []  # CPU: the host side only
                self.prof = profile(activities=[ProfilerActivity.CPU, *cuda])
                self.prof.start()
                self.prof_start = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            if self.prof is not None:
                self.stop_profile(state)

        def result(self) -> dict:
            marks = {s: (t, n) for s, t, n in self.marks}
            t0, n0 = marks[warmup]
            t1, n1 = marks[warmup + timed]
            return {"timed_steps": timed, "timed_seconds": round(t1 - t0, 3), "real_tokens": n1 - n0,
                    "tokens_per_s": round((n1 - n0) / (t1 - t0), 1),
                    "seconds_per_step": round((t1 - t0) / timed, 4)}

    return StepTimer()


def write_profile(prof, wall: float, steps: int, out_dir: Path) -> None:
    """Where GPU time goes: kernel time by category over `steps` optimizer steps, and the top kernels."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kernels = {}
    for evt in prof.events():
        if evt.device_type == torch.autograd.DeviceType.CUDA:
            kernels[evt.name] = kernels.get(evt.name, 0.0) + evt.device_time / 1e6  # device_time is in us
    busy = sum(kernels.values())

    def category(name: str) -> str:
        n = name.lower()
        for key, cat in (("gemm", "GEMM"), ("xmma", "GEMM"), ("nvjet", "GEMM"), ("cutlass", "GEMM"),
                         ("kdequantize", "bitsandbytes dequantize"), ("functor_add", "adds (LoRA, residual)"),
                         ("memcpy", "memcpy"), ("masked_scale", "dropout"),
                         ("flex", "attention (flex)"), ("fmha", "attention (sdpa)"), ("attention", "attention (sdpa)"),
                         ("rms_norm", "Liger RMSNorm"), ("swiglu", "Liger SwiGLU"), ("rope", "Liger RoPE"),
                         ("dropout", "dropout"), ("adam", "optimizer"), ("multi_tensor", "optimizer"),
                         ("reduce", "reductions"), ("copy", "copies/casts"), ("cat", "copies/casts"),
                         ("elementwise", "other elementwise"), ("triton", "other Triton")):
            if key in n:
                return cat
        return "other"

    cats = {}
    for name, t in kernels.items():
        cats[category(name)] = cats.get(category(name), 0.0) + t
    lines = [f"profiled {steps} optimizer steps: wall {wall:.3f} s, GPU kernels busy {busy:.3f} s "
             f"({100 * busy / wall:.0f}% of wall; the rest is the GPU waiting on Python/launches)", "",
             "category | seconds | share of kernel time", "---|---|---"]
    for cat, t in sorted(cats.items(), key=lambda kv: -kv[1]):
        lines.append(f"{cat} | {t:.3f} | {100 * t / busy:.1f}%")
    lines += ["", "top kernels | seconds", "---|---"]
    for name, t in sorted(kernels.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"{name[:110]} | {t:.4f}")
    # The host side: where Python/launch time goes and which operators wait for the GPU (a host read of a device
    # value: aten::item/_local_scalar_dense/nonzero, or a device-to-host copy, shows up as cudaStreamSynchronize
    # or cudaMemcpyAsync time). Self CPU time of each operator and runtime call, summed over the steps.
    host = {}
    for evt in prof.key_averages():
        if evt.device_type == torch.autograd.DeviceType.CPU:
            host[evt.key] = (host.get(evt.key, (0.0, 0))[0] + evt.self_cpu_time_total / 1e6,
                             host.get(evt.key, (0.0, 0))[1] + evt.count)
    syncs = {k: v for k, v in host.items() if k in SYNC_OPS}
    lines += ["", "host operators that wait for the GPU | calls | self CPU s", "---|---|---"]
    lines += [f"{k} | {n} | {t:.4f}" for k, (t, n) in sorted(syncs.items(), key=lambda kv: -kv[1][0])]
    # Who makes them: each runtime wait (cudaStreamSynchronize, cudaMemcpyAsync) under the operators that called it,
    # innermost first (call 14 counted ~685 syncs a step that torch's own sync-debug mode does not see)
    waits = collections.Counter()
    for evt in prof.events():
        if evt.name in ("cudaStreamSynchronize", "cudaMemcpyAsync", "cudaDeviceSynchronize"):
            chain, parent = [], evt.cpu_parent
            while parent is not None and len(chain) < 3:
                chain.append(parent.name[:60])
                parent = parent.cpu_parent
            waits[(evt.name, " <- ".join(chain) or "(no parent operator)")] += 1
    lines += ["", "runtime waits by calling operators (innermost first) | calls", "---|---"]
    lines += [f"{name}: {chain} | {n}" for (name, chain), n in waits.most_common(25)]
    lines += ["", "top host operators by self CPU time | calls | self CPU s", "---|---|---"]
    for k, (t, n) in sorted(host.items(), key=lambda kv: -kv[1][0])[:30]:
        lines.append(f"{k[:90]} | {n} | {t:.4f}")
    (out_dir / "profile.md").write_text("\n".join(lines) + "\n")
    say("\n".join(lines[:4 + len(cats)]))


SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "cudaStreamSynchronize",
            "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpyAsync", "cudaMemcpy", "aten::equal")


# ----- setups --------------------------------------------------------------------------------------------

def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from medchat.config import register_configs
    from medchat.rundir import register_resolvers

    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def medchat_fit(name: str, overrides: list[str], model_dir: Path, ds, work: Path, timer):
    """A run of medchat.pipeline.fit (no eval, no tracker) on the composed config, timed by `timer`;
    -> (metrics, cfg, info)."""
    from medchat import modeling, pipeline, training
    from medchat.plan import resolve
    from medchat.stages import stage_for
    from medchat.stages.base import StageData

    cpu = [] if torch.cuda.is_available() else ["model.dtype=float32"]  # the CPU smoke run
    cfg = compose(COMMON + [f"model.name_or_path={model_dir}", "model.chat_template=null"] + cpu + overrides)
    run_dir = work / "runs" / name
    stage = stage_for(cfg.stage)
    plan = stage.plan(resolve(cfg), cfg.model, cfg.dataset)
    args = stage.trainer_config(cfg.trainer, cfg.tracker, run_dir, plan)
    tokenizer = modeling.load_tokenizer(cfg.model)
    data = StageData(None, ds, None, {})
    if "_nonblocking_copies" in name:  # each batch copied to the GPU without waiting for the queue (pinned memory,
        # transformers' default, and accelerate's non_blocking): not yet measured on a GPU, so not yet medchat's
        args.accelerator_config.non_blocking = True
    keep = training.keep_adapter_fp32
    if name == "medchat_adapter_bf16":  # measure what keeping the adapter in fp32 costs
        training.keep_adapter_fp32 = lambda m: None
    import medchat.speed.compile as compile_mod

    compile_layers = compile_mod.compile_layers
    if "_cudagraphs" in name:  # not a config key until measured: the bench passes the mode itself
        # mode="reduce-overhead" is exclusive with Inductor options (eager's roundings): the same switch as an option
        compile_mod.compile_layers = lambda model, **kw: compile_layers(
            model, **{**kw, "options": {**(kw.get("options") or {}), "triton.cudagraphs": True}})
    if "_inductor_rounding" in name:  # Inductor's own rounding, as medchat compiled before call 13
        compile_mod.compile_layers = lambda model, **kw: compile_layers(model, **{**kw, "options": None})
    try:
        metrics = pipeline.fit(stage, plan, run_dir, args, tokenizer, data, cfg.trainer, cfg.lora, callbacks=[timer])
    finally:
        training.keep_adapter_fp32 = keep
        compile_mod.compile_layers = compile_layers
    speed = metrics["speed"]
    every = speed["checkpoint_every_n_layers"]
    layers = timer.model_config.num_hidden_layers
    info = {
        "overrides": overrides,
        "micro_batch": f"{args.per_device_train_batch_size}x{cfg.trainer.max_length} packed, "
                       f"accumulation {args.gradient_accumulation_steps}",
        "micro_batch_rows": args.per_device_train_batch_size,
        "activation_offloading": speed["activation_offloading"],
        "fused_lora_projections": speed.get("fused_lora_projections", 0),
        "compiled_layers": speed.get("compiled_layers", 0),  # 0 with compile_failed: the compiler failed, eager ran
        "compile_failed": speed.get("compile_failed"),
        "fixed_shape_tokens": speed.get("fixed_shape_tokens"),
        "padding_share": speed.get("padding_share"),
        "attn_implementation": speed["attn_implementation"],
        "use_liger_kernel": speed["use_liger_kernel"],
        "optim": speed["optim"],
        "checkpointed_layers": (-(-layers // every)) if speed["gradient_checkpointing"] else 0,
        "adapter_dtype": timer.adapter_dtype,
        "lora_dropout": cfg.lora.lora_dropout,
    }
    return metrics, cfg, info


def baseline_trainer(model_dir: Path, ds, work: Path, steps: int):
    """The notebooks' QLoRA recipe, written as they write it."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb,
                                                 device_map={"": 0} if cuda else None,
                                                 dtype=torch.bfloat16 if cuda else torch.float32)
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": True})
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=TARGETS,
                                             bias="none", task_type="CAUSAL_LM"))
    args = SFTConfig(
        output_dir=str(work / "runs" / "baseline"), max_steps=steps, per_device_train_batch_size=4,
        gradient_accumulation_steps=1, learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.03,
        max_grad_norm=0.3, optim="paged_adamw_32bit", bf16=cuda, use_cpu=not cuda, gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": True}, packing=False, max_length=2048,
        logging_steps=5, save_strategy="no", report_to=[], include_num_input_tokens_seen="non_padding",
        disable_tqdm=True, ddp_find_unused_parameters=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    info = {"micro_batch": "4 rows padded to the longest, no packing", "attn_implementation": "sdpa",
            "use_liger_kernel": False, "optim": "paged_adamw_32bit", "checkpointed_layers":
            model.config.num_hidden_layers, "checkpointing": "reentrant", "adapter_dtype": "as TRL leaves it",
            "lora_dropout": 0.05}
    return trainer, None, info


def unsloth_setup(name: str, model_dir: Path, a) -> dict:
    """bench/unsloth_throughput.py in a child process whose path puts Unsloth's packages (--unsloth-site) first."""
    import subprocess

    if not a.unsloth_site:
        raise RuntimeError(f"{name} needs --unsloth-site (a folder with Unsloth and its pins: bench/unsloth_throughput.py)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([a.unsloth_site, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, str(ROOT / "bench/unsloth_throughput.py"), "--model", str(model_dir),
           "--setup", name[len("unsloth_"):], "--lengths", a.lengths, "--steps", str(a.steps), "--warmup", str(a.warmup)]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.unsloth_timeout)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{name} exited {proc.returncode} without a result: {proc.stderr[-300:]}")
    result = json.loads(line[len("RESULT "):])
    result["total_seconds"] = round(time.time() - t0, 1)
    return result


def finish_unsloth(result: dict, peak_tflops: float | None) -> dict:
    from medchat import memory

    arch = memory.Arch(**{k: v for k, v in dict(layers=32, hidden=4096, intermediate=14336, kv_dim=1024, vocab=32000).items()})
    linear = arch.layers * arch.linear_params_per_layer() + arch.vocab * arch.hidden
    if peak_tflops:
        frac = result["checkpointed_layers"] / arch.layers
        result["mfu"] = round(result["tokens_per_s"] * 4 * linear / (peak_tflops * 1e12), 3)
        result["hfu"] = round(result["tokens_per_s"] * (4 + 2 * frac) * linear / (peak_tflops * 1e12), 3)
        result["limit_tokens_per_s_per_gpu"] = round(peak_tflops * 1e12 / ((4 + 2 * frac) * linear))
    return result


def run_setup(name: str, model_dir: Path, ds, work: Path, a, peak_tflops: float | None, profile: bool) -> dict:
    from medchat import memory

    if SETUPS[name] == "unsloth":
        return finish_unsloth(unsloth_setup(name, model_dir, a), peak_tflops)
    steps = a.warmup + a.steps + (3 if profile else 0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    # each profiled setup its own folder (several may be profiled in one run)
    profile_dir = (Path(a.out).parent if a.out else work) / f"profile_{name}" if profile else None
    timer = timer_callback(a.warmup, a.steps, profile_dir)
    if name == "baseline":
        trainer, cfg, info = baseline_trainer(model_dir, ds, work, steps)
        trainer.add_callback(timer)
        trainer.train()
        final_loss, model_config = trainer.state.log_history[-1].get("train_loss"), trainer.model.config
        del trainer
    else:
        metrics, cfg, info = medchat_fit(name, SETUPS[name] + [f"trainer.max_steps={steps}"], model_dir, ds, work, timer)
        final_loss, model_config = metrics["train_loss"], timer.model_config
    load_s = timer.began - t0
    result = {"setup": name, **info, **timer.result(), "load_seconds": round(load_s, 1),
              "total_seconds": round(time.time() - t0, 1), "final_loss": final_loss}
    arch = memory.Arch.from_config(model_config)
    linear = arch.layers * arch.linear_params_per_layer() + arch.vocab * arch.hidden  # + lm_head
    frac = result["checkpointed_layers"] / arch.layers
    if torch.cuda.is_available():
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
        result["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 2)
    if cfg is not None:
        t = cfg.trainer
        result["estimated_peak_gib"] = round(memory.estimate_peak_bytes(
            arch, tokens=result["micro_batch_rows"] * t.max_length, checkpointed_layers=result["checkpointed_layers"],
            quant_mode="nf4", lora_r=cfg.lora.r, lora_targets=TARGETS,
            lora_dropout=0.0 if result.get("fused_lora_projections") else cfg.lora.lora_dropout,
            liger=result["use_liger_kernel"], attention=result["attn_implementation"], sequence=t.max_length) / GIB, 2)
    if peak_tflops:
        tps = result["tokens_per_s"] / int(os.environ.get("WORLD_SIZE", "1"))  # per GPU
        result["mfu"] = round(tps * 4 * linear / (peak_tflops * 1e12), 3)
        result["hfu"] = round(tps * (4 + 2 * frac) * linear / (peak_tflops * 1e12), 3)
        result["limit_tokens_per_s_per_gpu"] = round(peak_tflops * 1e12 / ((4 + 2 * frac) * linear))
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", default="baseline,medchat", help=f"comma list of {', '.join(SETUPS)}, or all")
    ap.add_argument("--shape", default="mistral7b", choices=sorted(SHAPES))
    ap.add_argument("--lengths", default=str(ROOT / "bench/icliniq_lengths.json"))
    ap.add_argument("--work", default="/tmp/medchat-bench")
    ap.add_argument("--steps", type=int, default=12, help="timed optimizer steps per setup")
    ap.add_argument("--warmup", type=int, default=4, help="untimed optimizer steps first (compilation, caches)")
    ap.add_argument("--deadline", type=float, default=None, help="skip setups that would start after this many seconds")
    ap.add_argument("--profile", default="", metavar="SETUPS",
                    help="profile 3 extra steps of each of these setups (comma list); OUT's folder/profile_SETUP/")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--unsloth-site", default=None, help="folder with Unsloth's packages, for the unsloth_* setups")
    ap.add_argument("--unsloth-timeout", type=float, default=240)
    ap.add_argument("--out", default=None, help="write the results as JSON here (rewritten after each setup)")
    a = ap.parse_args()
    start = time.time()
    if torch.cuda.is_available():  # under torchrun / accelerate launch: this process's own GPU from the start
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    os.environ.setdefault("MEDCHAT_CACHE", str(Path(a.work) / "cache"))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if rank() == 0:
        model_dir = prepare_model(work, a.shape)
    if a.prepare_only:
        return
    model_dir = work / f"{a.shape}-nf4"
    names = list(SETUPS) if a.setups == "all" else a.setups.split(",")
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown setups {unknown}; known: {', '.join(SETUPS)}")
    # In the order given, except Liger-free setups first: Liger patches the Mistral classes process-wide
    # (Unsloth's setups run in their own processes)
    names = [n for n in names if n == "medchat_noliger"] + [n for n in names if n != "medchat_noliger"]
    report = {"command": " ".join(sys.argv), "world_size": int(os.environ.get("WORLD_SIZE", "1")),
              "versions": versions(), "shape": a.shape, "lengths": a.lengths, "setups": []}
    report["matmul_peak_tflops"] = matmul_peak_tflops() if a.shape == "mistral7b" else None
    say(f"bf16 matmul peak: {report['matmul_peak_tflops']} TFLOP/s")
    from transformers import AutoConfig

    ds = rows(Path(a.lengths), AutoConfig.from_pretrained(model_dir).vocab_size)
    for name in names:
        if a.deadline and time.time() - start > a.deadline:
            say(f"skipping {name}: past the {a.deadline:.0f} s deadline")
            continue
        try:
            result = run_setup(name, model_dir, ds, work, a, report["matmul_peak_tflops"],
                                name in a.profile.split(","))
        except Exception as e:  # keep measuring the other setups; the error is part of the record
            import traceback

            traceback.print_exc()
            result = {"setup": name, "error": f"{type(e).__name__}: {str(e)[:500]}"}
            gc.collect()
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
        report["setups"].append(result)
        say(json.dumps(result))
        if a.out and rank() == 0:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    base = next((r["tokens_per_s"] for r in report["setups"] if r["setup"] == "baseline"), None)
    say(f"\n{report['world_size']} process(es) | {report['versions'].get('gpu')}")
    say("setup | tokens/s (all GPUs) | x baseline | peak GiB (est.) | MFU | HFU | limit tokens/s per GPU")
    for r in report["setups"]:
        if "error" in r:
            say(f"{r['setup']} | failed: {r['error'][:200]}")
            continue
        speed = f"{r['tokens_per_s'] / base:.2f}" if base else "-"
        say(f"{r['setup']} | {r['tokens_per_s']:.0f} | {speed} | {r.get('peak_gib', '-')} "
            f"({r.get('estimated_peak_gib', '-')}) | {r.get('mfu', '-')} | {r.get('hfu', '-')} | "
            f"{r.get('limit_tokens_per_s_per_gpu', '-')}")


if __name__ == "__main__":
    main()
