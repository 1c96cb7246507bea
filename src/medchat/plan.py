"""The run plan: every `auto` and hardware-dependent choice of a run, resolved once, before any weights load.

`resolve(cfg, hw)` turns the config plus the machine (medchat.hardware.Hardware) into one frozen RunPlan:
placement, dtype, precision flags, attention for training and for generation, Liger, optimizer, LoRA target
modules, the checkpointing plan with its memory estimate, the world size, and issue 13's speed levers (fused
LoRA, regional compile, the micro-batch / accumulation split and activation offloading from the memory
budget: medchat.speed.apply). `pipeline.train` logs it,
saves it as RUN/plan.json and hands it to the builders (modeling.load_model, training.sft_config), which
consume it and decide nothing themselves (training.build_trainer applies the fused LoRA and compile
switches through medchat.speed.apply.apply). `model_plan()` answers the same questions for loading a model
only (what medchat.run_models uses to load a finished run for generation on this machine).

    python -m medchat.plan trainer=debug model=mistral7b     # what this config would do on this machine

Attention: flash_attention_2 when installed (and the dtype is 16-bit), else flex_attention on a CUDA GPU
(block-sparse per-document masks for packed rows), else sdpa. All three keep packed documents apart:
transformers derives a per-document causal mask from the restarting `position_ids` whenever there is no KV
cache. Generation never gets flex_attention, which recompiles as the KV cache grows: it uses sdpa (or
flash_attention_2 when that is the training choice).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from medchat import hardware, launch_checks, memory, modeling, rundir, tiny
from medchat.config import ConfigError
from medchat.eval_schedule import EvalPlan, evaluation_plan
from medchat.hardware import Hardware
from medchat.speed import apply as speed
from medchat.speed.microbatch import MicroBatchPlan

log = logging.getLogger(__name__)
PLAN_FILE = rundir.PLAN_FILE  # written with the attempt's record (medchat.attempt)


@dataclass(frozen=True)
class QuantPlan:
    mode: str  # nf4 | fp4 | int8 | none
    double_quant: bool = True
    compute_dtype: str | None = None  # 4-bit matmuls; the model's dtype unless set
    storage: str | None = None  # bnb_4bit_quant_storage (the model's dtype under FSDP); None: bitsandbytes' uint8


@dataclass(frozen=True)
class ModelPlan:
    """How the base model is loaded: all that modeling.load_model needs."""

    path: str
    revision: str | None
    trust_remote_code: bool
    dtype: str  # bfloat16 | float16 | float32
    train_attention: str
    generation_attention: str  # never flex_attention
    device: int | None  # this process's CUDA device; None: CPU, or FSDP places the shards
    cuda: bool
    quant: QuantPlan = field(default_factory=lambda: QuantPlan("none"))


@dataclass(frozen=True)
class BatchPlan:
    """How the optimizer step's rows are split: the config's numbers, or the auto micro-batch plan's."""

    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    activation_offloading: bool
    micro_batch: MicroBatchPlan | None = None  # the auto plan, when trainer.micro_batch=auto applied

    @property
    def reason(self) -> str:
        how = self.micro_batch.reason if self.micro_batch else "the config's batch"
        return f"{self.per_device_train_batch_size} rows x {self.gradient_accumulation_steps} accumulation" \
               f"{', activations offloaded' if self.activation_offloading else ''} ({how})"


@dataclass(frozen=True)
class RunPlan:
    model: ModelPlan
    precision: str  # bf16 | fp16 | fp32
    use_cpu: bool
    optim: str
    liger: bool
    target_modules: tuple[str, ...]
    checkpointing: memory.CheckpointPlan
    world_size: int
    fsdp: bool
    hardware: Hardware
    batch: BatchPlan
    fused_lora: bool  # one autograd function per LoRA projection (medchat.speed.fused_lora)
    compile: bool  # regional torch.compile of the decoder layers (medchat.speed.compile)
    # trainer.eval_steps resolved: from the config alone by resolve(), with the data's rows and tokens by
    # with_data() (what the run uses)
    evaluation: EvalPlan | None = None
    # every micro-batch padded to fixed_shape_tokens (medchat.speed.apply.use_fixed_shape); None: shapes vary
    fixed_shape_tokens: int | None = None
    compile_reason: str = ""  # why compile is on or off (medchat.speed.apply.compile_choice)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    def describe(self) -> str:
        m, c = self.model, self.checkpointing
        where = f"cuda:{m.device}" if m.device is not None else ("FSDP-sharded" if self.fsdp else "cpu")
        return (f"run plan: {where}, world size {self.world_size}; dtype {m.dtype}, precision {self.precision}; "
                f"attention {m.train_attention} (generation {m.generation_attention}); liger {self.liger}; "
                f"optim {self.optim}; quant {m.quant.mode}; LoRA on {', '.join(self.target_modules)}; "
                f"fused LoRA {self.fused_lora}; compile {self.compile}"
                f"{f' ({self.compile_reason})' if self.compile_reason else ''}; "
                f"fixed shape {self.fixed_shape_tokens or 'no'}; batch {self.batch.reason}; "
                f"checkpointing: {c.reason}")


# ----- the single choices ------------------------------------------------------------------------------

def choose_dtype(choice: str, hw: Hardware) -> str:
    """model.dtype: auto -> float32 on CPU, bfloat16 on a GPU that has it, else float16."""
    if choice != "auto":
        return choice
    if not hw.cuda:
        return "float32"
    return "bfloat16" if hw.bf16 else "float16"


def choose_precision(choice: str, hw: Hardware) -> str:
    """trainer.precision -> bf16 | fp16 | fp32, refusing what the machine cannot do."""
    if choice == "auto":
        return "fp32" if not hw.cuda else ("bf16" if hw.bf16 else "fp16")
    if choice in ("bf16", "fp16") and not hw.cuda:
        raise ConfigError(f"trainer.precision={choice} needs a CUDA GPU; on CPU use trainer.precision=fp32 or auto")
    if choice == "bf16" and not hw.bf16:
        raise ConfigError("trainer.precision=bf16: this GPU has no bf16 support; use fp16 or auto")
    return choice


def choose_attention(choice: str, *, cuda: bool, half_precision: bool, flash_attn: bool,
                     supports_flex: bool) -> str:
    """model.attn_implementation for training: `auto` takes the fastest kernel that keeps packed documents
    apart on this machine (see the module docstring)."""
    if choice != "auto":
        return choice
    if not cuda:
        return "sdpa"  # flex on CPU compiles through a C++ toolchain and is no faster there
    if half_precision and flash_attn:
        return "flash_attention_2"
    if supports_flex:
        return "flex_attention"
    return "sdpa"


def generation_attention(train_attention: str) -> str:
    """The kernel for generate(): the training one, except flex_attention, which recompiles as the cache grows."""
    return "sdpa" if train_attention == "flex_attention" else train_attention


def choose_liger(choice, hw: Hardware) -> bool:
    """trainer.use_liger_kernel: auto -> off; true -> on (a CUDA GPU with liger-kernel installed).

    Off under auto because it failed its equivalence check (bench/RESULTS.md, issue 19): on the Mistral-7B shape in
    bf16 its worst adapter-gradient cosine against the plain path was 0.98682, outside twice the rounding floor of
    reorderings that are exact in real arithmetic (0.99347 -> limit 0.98694). Its bf16 kernels round at other
    points than transformers' RMSNorm and cross-entropy (both upcast to fp32). `true` still switches it on for the
    memory it saves (22.3 vs 27.8 GiB peak at the 7B defaults)."""
    choice = str(choice).lower()
    if choice == "auto":
        return False
    if choice == "true":
        if not hw.cuda:
            raise ConfigError("trainer.use_liger_kernel=true needs a CUDA GPU (Liger's kernels are Triton); use auto")
        if not hw.liger:
            raise ConfigError("trainer.use_liger_kernel=true but liger-kernel is not installed: pip install "
                              "'medchat[gpu]' (or liger-kernel), or set trainer.use_liger_kernel=auto")
        return True
    if choice == "false":
        return False
    raise ConfigError(f"trainer.use_liger_kernel={choice!r} is not one of auto, true, false")


def choose_optimizer(optim: str, hw: Hardware) -> str:
    if optim != "auto":
        return optim
    return "adamw_torch_fused" if hw.cuda else "adamw_torch"


def export_dtype(name: str, hw: Hardware) -> str:
    """The dtype of merged weights: auto -> bf16 where the GPU (or, without one, the CPU) supports it, else fp16;
    never 32-bit unless asked."""
    if name not in ("auto", "bfloat16", "float16", "float32"):
        raise ConfigError(f"dtype={name!r} is not one of auto, bfloat16, float16, float32")
    if name != "auto":
        return name
    return "float16" if hw.cuda and not hw.bf16 else "bfloat16"


# ----- the model and the whole run ---------------------------------------------------------------------

def model_plan(model_cfg, quant_cfg, hw: Hardware, path: str | None = None, config=None) -> ModelPlan:
    """How to load the base model on `hw`. `config` (the model's transformers config) is read from `path`
    only when `auto` attention has to know whether the architecture supports flex_attention."""
    if path is None:
        launch_checks.check_model_reachable(model_cfg.name_or_path, model_cfg.revision)
    path = path or modeling.model_path(model_cfg)
    dtype = choose_dtype(model_cfg.dtype, hw)
    launch_checks.check_quantization(quant_cfg, hw)
    launch_checks.check_fsdp_quantization(quant_cfg, dtype, hw.fsdp)
    half = dtype != "float32"
    flex = False
    if model_cfg.attn_implementation == "auto" and hw.cuda and hw.flex_attention and not (half and hw.flash_attn):
        flex = modeling.supports_flex_attention(config if config is not None else _config_or_none(model_cfg, path))
    train_attention = choose_attention(model_cfg.attn_implementation, cuda=hw.cuda, half_precision=half,
                                       flash_attn=hw.flash_attn, supports_flex=flex)
    quant = QuantPlan(quant_cfg.mode)
    if quant_cfg.mode in ("nf4", "fp4"):
        compute = dtype if quant_cfg.compute_dtype in (None, "auto") else quant_cfg.compute_dtype
        storage = quant_cfg.quant_storage or (dtype if hw.fsdp else None)
        quant = QuantPlan(quant_cfg.mode, bool(quant_cfg.double_quant), compute, storage)
    return ModelPlan(
        path=str(path), revision=model_cfg.revision, trust_remote_code=bool(model_cfg.trust_remote_code),
        dtype=dtype, train_attention=train_attention, generation_attention=generation_attention(train_attention),
        # Each process holds a whole copy on its own GPU (what DDP needs for 4-bit models); under FSDP the
        # model is loaded unplaced and FSDP shards it across the ranks.
        device=hw.local_rank if hw.cuda and not hw.fsdp else None, cuda=hw.cuda, quant=quant)


def _config_or_none(model_cfg, path: str):
    try:
        return modeling.model_config(model_cfg, path)
    except Exception:  # remote code or an unreadable config: no flex, sdpa it is
        return None


def checkpoint_plan(cfg, hw: Hardware, arch: memory.Arch, attention: str, liger: bool,
                    target_modules) -> memory.CheckpointPlan:
    """trainer.gradient_checkpointing (+ the memory budget) -> which decoder layers are checkpointed."""
    t = cfg.trainer
    choice = memory.normalize_checkpointing(t.gradient_checkpointing)
    budget = memory.memory_budget_bytes(t.memory_budget_gib, hw.gpu_memory_bytes)
    if choice != "auto" or not hw.cuda or hw.fsdp or budget is None:
        # Under FSDP the model does not fit one GPU by assumption: auto checkpoints every layer.
        return memory.plan_checkpointing(choice, cuda=hw.cuda, every_n_layers=t.checkpoint_every_n_layers,
                                         layers=arch.layers)

    def estimate(checkpointed_layers: int) -> int:
        return memory.estimate_peak_bytes(
            arch, tokens=t.per_device_train_batch_size * t.max_length, checkpointed_layers=checkpointed_layers,
            quant_mode=cfg.quant.mode, lora_r=cfg.lora.r, lora_targets=list(target_modules),
            lora_dropout=cfg.lora.lora_dropout, liger=liger, attention=attention, sequence=t.max_length)

    return memory.plan_checkpointing(choice, cuda=True, every_n_layers=t.checkpoint_every_n_layers,
                                     layers=arch.layers, estimate=estimate, budget_bytes=budget)


def with_data(plan: RunPlan, cfg, *, packs: bool, train_rows: int, train_tokens: int | None, eval_rows: int,
              eval_tokens: int | None) -> RunPlan:
    """The run plan with its evaluation planned from the tokenized data (what pipeline.train runs). `packs`: the
    stage packs rows when trainer.packing asks (medchat.stages: SFT does; TRL's DPO and ORPO trainers do not)."""
    packing = bool(cfg.trainer.packing) and packs
    return replace(plan, evaluation=evaluation_plan(cfg.trainer, plan.batch, plan.world_size, packing=packing,
                                                    train_rows=train_rows,
                                                    train_tokens=train_tokens, eval_rows=eval_rows,
                                                    eval_tokens=eval_tokens))


def resolve(cfg, hw: Hardware | None = None, config=None) -> RunPlan:
    """The run plan of `cfg` on `hw` (default: this machine). Reads the model's config (unless given as
    `config`) and instantiates it on the meta device (for its linear module names); no weights are read.
    Raises ConfigError for a choice the machine cannot honour."""
    hw = hw or hardware.detect()
    launch_checks.check_processes_vs_gpus(hw)  # before the distributed setup, where two ranks on one GPU hang
    path = modeling.model_path(cfg.model)
    if config is None:  # read from the model: refuse first one that is not here and cannot be fetched
        launch_checks.check_model_reachable(cfg.model.name_or_path, cfg.model.revision)  # no network needed
        try:
            config = modeling.model_config(cfg.model, path)
        except OSError as e:  # the Hub does not answer: say how to use a local copy instead
            if not launch_checks.is_unreachable(e):
                raise
            raise ConfigError(launch_checks.unreachable_model_message(path, str(e).splitlines()[0])) from None
    model = model_plan(cfg.model, cfg.quant, hw, path, config=config)
    targets = tuple(modeling.resolve_target_modules(cfg.lora, modeling.architecture_linear_names(cfg.model, config)))
    liger = choose_liger(cfg.trainer.use_liger_kernel, hw)
    arch = memory.Arch.from_config(config)
    t = cfg.trainer
    precision = choose_precision(t.precision, hw)
    fused = speed.use_fused_lora(t, cfg.quant.mode, hw, precision)
    mb = speed.micro_batch_plan(t, cfg.lora, cfg.quant.mode, hw, arch, liger=liger, attention=model.train_attention,
                                fused=fused, targets=targets)
    # compiled, the micro-batch plan carries the compiled step's estimate (and, under auto, may be split smaller)
    compiled, mb, compile_reason = speed.compile_choice(
        t, hw, model_type=getattr(config, "model_type", None), quant_mode=cfg.quant.mode, precision=precision,
        fused=fused, attention=model.train_attention, liger=liger, mb=mb,
        estimate=speed.estimate_fn(t, cfg.lora, cfg.quant.mode, arch, liger, model.train_attention, fused, targets),
        stage=str(cfg.stage.name) if "stage" in cfg else "sft")
    if mb is None:  # the config's split stands, checkpointed as trainer.gradient_checkpointing says
        checkpointing = checkpoint_plan(cfg, hw, arch, model.train_attention, liger, targets)
        batch = BatchPlan(t.per_device_train_batch_size, t.gradient_accumulation_steps,
                          speed.offload_choice(t) == "true")
    else:  # the same rows per optimizer step, split to fit the memory budget
        checkpointing = speed.checkpointing_of(mb, arch.layers)
        batch = BatchPlan(mb.per_device_train_batch_size, mb.gradient_accumulation_steps,
                          speed.offload_choice(t) == "true" or mb.offload, mb)
    return RunPlan(model=model, precision=precision, use_cpu=not hw.cuda,
                   optim=choose_optimizer(t.optim, hw), liger=liger, target_modules=targets,
                   checkpointing=checkpointing, world_size=hw.world_size, fsdp=hw.fsdp, hardware=hw,
                   batch=batch, fused_lora=fused, compile=compiled,
                   evaluation=evaluation_plan(t, batch, hw.world_size),
                   fixed_shape_tokens=speed.fixed_shape_tokens(t, batch.per_device_train_batch_size)
                   if speed.use_fixed_shape(t, compiled) else None,  # with_data() adds the data's counts
                   compile_reason=compile_reason)


def tokenized_cache_dir(run_dir: str | Path) -> Path:
    """Where the tokenized-data cache (medchat.data.cache) keeps its entries for this run: inside a sweep, the
    sweep dir's `.tokenized/` (shared by its jobs, deleted with it; job.json's sweep_dir under the medchat
    launcher, Hydra's sweep dir under an in-process one), otherwise `$MEDCHAT_CACHE/tokenized/`."""
    sweep = None
    job = Path(run_dir) / "job.json"
    if job.exists():
        sweep = json.loads(job.read_text()).get("sweep_dir") or None
    sweep = sweep or rundir.multirun_sweep_dir()
    if sweep is not None:
        return Path(sweep) / ".tokenized"
    return tiny.cache_root() / "tokenized"


def read_saved(run_dir: str | Path) -> dict | None:
    """RUN/plan.json as saved by the training run (None for runs made before plans were saved)."""
    path = Path(run_dir) / PLAN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list[str] | None = None) -> None:
    """`python -m medchat.plan [overrides]`: compose the training config as train.py would, print its plan."""
    from hydra import compose, initialize_config_dir

    from medchat.config import register_configs
    from medchat.config_checks import validate
    from medchat.rundir import register_resolvers
    from medchat.stages import stage_for

    from medchat import console

    console.install()
    argv = sys.argv[1:] if argv is None else argv
    roots = (Path.cwd(), Path(__file__).resolve().parents[2])  # here, or the checkout of an editable install
    conf = next((r / "conf" for r in roots if (r / "conf/config.yaml").is_file()), None)
    if conf is None:
        sys.exit("medchat.plan: error: no conf/config.yaml here or in the medchat checkout: run it from the repository")
    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=list(argv))
    try:
        validate(cfg)
        stage_for(cfg.stage).check(cfg.dataset)
        plan = resolve(cfg)
    except ConfigError as e:
        sys.exit(f"medchat.plan: error: {e}")
    plan = estimate_with_data(plan, cfg)
    print(plan.describe())
    print(plan.evaluation.describe())
    print(json.dumps(plan.to_dict(), indent=2))


SAMPLE_ROWS = 256  # rows tokenized to estimate the tokens of the whole split


def estimate_with_data(plan: RunPlan, cfg) -> RunPlan:
    """The plan with its evaluation from the real split's row counts and the tokens of a sample of its rows
    (what `python -m medchat.plan` shows without tokenizing a large dataset; the run counts every token).
    The plan as it was when the data cannot be read here (a Hub dataset offline) or is pairs (stage=dpo|orpo)."""
    from medchat.stages import stage_for

    stage = stage_for(cfg.stage)
    if stage.pairs:
        return plan
    from medchat import data
    from medchat.formatting import tokenize_conversation

    try:
        split = data.load_split(cfg.dataset)
        tokenizer = modeling.load_tokenizer(cfg.model)
    except Exception as e:  # noqa: BLE001 - the rest of the plan is still worth printing
        log.warning("evaluation planned without the data (%s: %s)", type(e).__name__, e)
        return plan

    def tokens(records: list[dict]) -> int:
        sample = records[:SAMPLE_ROWS]  # the split is shuffled: a seeded random sample
        if not sample:
            return 0
        lengths = [min(len(tokenize_conversation(tokenizer, r["messages"], cfg.dataset.prompt_format)["input_ids"]),
                       cfg.trainer.max_length) for r in sample]
        return round(sum(lengths) / len(sample) * len(records))

    return with_data(plan, cfg, packs=stage.packs, train_rows=len(split.train), train_tokens=tokens(split.train),
                     eval_rows=len(split.eval), eval_tokens=tokens(split.eval))


if __name__ == "__main__":
    main()
