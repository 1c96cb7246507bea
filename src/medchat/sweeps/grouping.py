"""Which sweep jobs may train together in one process (launcher.pack=N, issue 24).

Jobs pack when their composed configs (flattened, so `lora=r16` and `lora.r=16` compare alike) differ only in
adapter-side keys: what each job owns in a packed process (its LoRA, its optimizer, its schedule, its seed:
medchat.sweeps.pack_train). Any other difference (model, quant, data, max_length, batch shape, stage, eval ...)
means another base, other rows or another step, so it splits the group. Launching keys (launcher.*,
trainer.resume) and a run's W&B naming never split a group.

A job runs alone, as without packing, when the packed loop does not serve one of its settings; `why_alone`
names that setting, and the launcher's dry run prints it per job. Groups are chunked, in job order, into
processes of at most N jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What each job of a pack owns. lora.targets / lora.target_modules are resolved per job against the model.
ADAPTER_KEYS = ("lora.r", "lora.lora_alpha", "lora.lora_dropout", "lora.targets", "lora.target_modules",
                "trainer.learning_rate", "trainer.lr_scheduler_type", "trainer.warmup_steps",
                "trainer.weight_decay", "trainer.max_grad_norm", "trainer.seed")
# Keys that change neither the base, nor the rows, nor the step: how the job is launched and named.
IGNORED_PREFIXES = ("launcher.", "hydra.")
IGNORED_KEYS = ("trainer.resume", "tracker.name", "tracker.tags")


def _flat(cfg: dict) -> dict:
    from medchat.config import flatten

    return flatten(cfg)


def why_alone(cfg: dict, *, gpus_per_job: int = 1, accelerate_args=()) -> str | None:
    """Why this job (a plain composed config) cannot train in a pack; None when it can. Each reason names the
    setting the packed loop (medchat.sweeps.pack_train) does not serve."""
    t, lora = cfg["trainer"], cfg["lora"]
    checks = [
        (cfg["stage"]["name"] != "sft", f"stage={cfg['stage']['name']}: only SFT packs"),
        (cfg["quant"]["mode"] == "int8", "quant=int8: the packed layers serve 4-bit and unquantized bases only"),
        (cfg["eval"].get("every_steps") is not None, "eval.every_steps: generation callbacks run in a solo trainer"),
        (gpus_per_job > 1 or bool(accelerate_args), "several processes per job (launcher.gpus_per_job > 1 or "
                                                     "accelerate arguments): the packed loop is one process"),
        (t["train_sampling_strategy"] != "random", f"trainer.train_sampling_strategy={t['train_sampling_strategy']}: "
                                                   "the packed loop reproduces the random sampler only"),
        (bool(t["load_best_model_at_end"] or t["early_stopping_patience"]),
         "trainer.load_best_model_at_end / early_stopping_patience: needs evaluations during training"),
        (str(t["use_liger_kernel"]).lower() == "true", "trainer.use_liger_kernel=true: not in the packed loop"),
        (str(t["compile"]).lower() == "true", "trainer.compile=true: not in the packed loop"),
        (str(t["gradient_checkpointing"]).lower() in ("true", "partial"),
         f"trainer.gradient_checkpointing={t['gradient_checkpointing']}: not in the packed loop"),
        (str(t["activation_offloading"]).lower() == "true", "trainer.activation_offloading=true: not in the packed loop"),
        (t.get("fail_at_step") is not None, "trainer.fail_at_step: a solo-trainer testing aid"),
        (bool(lora["use_rslora"]), "lora.use_rslora: the packed layers scale by alpha / r"),
        (lora["bias"] != "none", f"lora.bias={lora['bias']}: the packed layers train no biases"),
    ]
    for failed, reason in checks:
        if failed:
            return reason
    return None


def shared_key(cfg: dict) -> tuple:
    """The part of a config that every job of a pack must share: everything but the adapter-side, launching and
    naming keys, flattened and sorted (so a value reached through a config group equals one set by a dotted key)."""
    flat = _flat(cfg)
    kept = {k: v for k, v in flat.items() if k not in ADAPTER_KEYS and k not in IGNORED_KEYS
            and not k.startswith(IGNORED_PREFIXES)}
    return tuple(sorted((k, repr(v)) for k, v in kept.items()))


@dataclass
class Group:
    """Jobs (their positions in the sweep's job list) that run in one process; `reason`: why a lone job is alone."""

    members: list[int] = field(default_factory=list)
    reason: str = ""

    @property
    def packed(self) -> bool:
        return len(self.members) > 1


def group_jobs(configs: list[dict | None], pack: int, *, gpus_per_job: int = 1, accelerate_args=()) -> list[Group]:
    """Split the sweep's jobs (plain composed configs, in job order; None for a job that will not run) into
    processes: jobs that may pack and share every non-adapter key, chunked in job order into groups of at most
    `pack`; every other job alone with its reason. Groups come out ordered by their first job."""
    if pack < 1:
        from medchat.config import ConfigError

        raise ConfigError(f"launcher.pack must be >= 1, got {pack}")
    groups: list[Group] = []
    buckets: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        if cfg is None:
            continue
        reason = "launcher.pack=1" if pack == 1 else why_alone(cfg, gpus_per_job=gpus_per_job,
                                                                 accelerate_args=accelerate_args)
        if reason:
            groups.append(Group([i], reason))
            continue
        buckets.setdefault(shared_key(cfg), []).append(i)
    for members in buckets.values():
        for start in range(0, len(members), pack):
            chunk = members[start:start + pack]
            groups.append(Group(chunk, "" if len(chunk) > 1 else
                                "no other job of the sweep differs from it in adapter-side keys only"))
    groups.sort(key=lambda g: g.members[0])
    return groups


def differing_keys(configs: list[dict]) -> list[str]:
    """The flattened keys whose values differ between `configs` (what a dry run shows for a group)."""
    flats = [_flat(c) for c in configs]
    keys = sorted(set().union(*flats))
    return [k for k in keys if len({repr(f.get(k, "<absent>")) for f in flats}) > 1]
