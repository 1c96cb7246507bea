"""Short, readable W&B run names for sweep jobs, from what differs between the jobs of one sweep.

A rank x lr x targets sweep gets names like `r8-lr1e-4-all_linear` instead of the job folders `0`, `1`, ...:
only the keys whose value differs between jobs are named (what every job shares says nothing), each as
a short prefix + its value; config-group choices (`model=mistral7b`) and string choices of well-known keys
(`lora.targets=all_linear`) are named by their value alone. Names are unique within the sweep (a clash
gets `-<job number>`) and capped at 128 characters, W&B's display limit being far beyond what a dashboard shows.
"""

from __future__ import annotations

import re

from medchat.sweeps.state import override_key

# dotted key -> short prefix; anything else is named by its last part
SHORT = {
    "lora.r": "r", "lora.lora_alpha": "a", "lora.lora_dropout": "do", "lora.targets": "", "lora.use_rslora": "rslora",
    "trainer.learning_rate": "lr", "trainer.seed": "seed", "dataset.seed": "dseed", "trainer.max_steps": "steps",
    "trainer.num_train_epochs": "ep", "trainer.per_device_train_batch_size": "bs",
    "trainer.gradient_accumulation_steps": "ga", "trainer.max_length": "len", "trainer.packing": "pack",
    "trainer.lr_scheduler_type": "", "trainer.weight_decay": "wd", "trainer.warmup_steps": "wu",
    "quant.mode": "", "dataset.n": "n", "model.name_or_path": "",
}
MAX_LEN = 128


def _value(text: str) -> str:
    """`0.0001` -> `1e-4`, `2.0e-4` -> `2e-4`, `[q_proj,v_proj]` -> `q_proj+v_proj`; other text as is."""
    text = text.strip().strip("'\"")
    try:
        number = float(text)
    except ValueError:
        return re.sub(r"[^\w.+]+", "+", text.strip("[]")).strip("+")[:40]
    if number != 0 and (abs(number) < 1e-2 or abs(number) >= 1e5):
        mantissa, exp = f"{number:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    return text if not text.endswith(".0") else text[:-2]


def part(override: str) -> str:
    key, value = override_key(override), _value(override.split("=", 1)[1])
    if "." not in key:  # a config group choice: model=mistral7b, lora=r32
        return value
    prefix = SHORT.get(key, key.rsplit(".", 1)[1])
    return f"{prefix}{value}" if prefix else value


def sweep_names(identities: list[list[str]], numbers: list[int] | None = None) -> list[str]:
    """One name per job, from the overrides (as in job.json) whose value differs between the jobs."""
    numbers = list(range(len(identities))) if numbers is None else numbers
    values: dict[str, set] = {}
    for ident in identities:
        for o in ident:
            if "=" in o:
                values.setdefault(override_key(o), set()).add(o.split("=", 1)[1])
    varying = [k for k in values if len(values[k]) > 1 or any(k not in map(override_key, i) for i in identities)]
    names = []
    for ident in identities:
        by_key = {override_key(o): o for o in ident if "=" in o}
        parts = [part(by_key[k]) for k in varying if k in by_key]
        names.append("-".join(parts)[:MAX_LEN] or "default")
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [f"{n}-{num}" if seen[n] > 1 else n for n, num in zip(names, numbers)]


def single_name(overrides: list[str], fallback: str) -> str:
    """A job run on its own (or by an in-process launcher, which knows no other job): all its overrides."""
    parts = [part(o) for o in overrides if "=" in o and not o.startswith(("hydra", "tracker.", "runs_root"))]
    return "-".join(parts)[:MAX_LEN] or fallback
