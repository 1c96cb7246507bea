"""The packed process: what the medchat launcher starts for a group of packed sweep jobs (launcher.pack=N).

    python -m medchat.sweeps.pack_process SPEC.json    # SPEC (medchat.sweeps.pack_launch.spec) names each job

Each job's config is composed as train.py composes it (its overrides, the sweep's config dir and name), then
medchat.sweeps.pack_train.train_pack trains them all. Exit code: 0 when every job ended done, 1 when one failed
(the others still trained), 2 when the configs were refused before any weights loaded (every job's status says
why), medchat.preemption.EXIT_INTERRUPTED when stopped by a signal (every job checkpointed, resumable).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from medchat.sweeps.pack_train import train_pack


def compose_job(spec: dict, job: dict) -> DictConfig:
    """A job's config composed as train.py composes it: the same config dir(s) and name, the job's overrides
    (+ trainer.resume=auto for a job the launcher resumes)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from medchat.config import register_configs
    from medchat.rundir import register_resolvers

    register_configs()
    register_resolvers()
    extra = [f"hydra.searchpath=[{','.join('file://' + d for d in spec['search_dirs'])}]"] if spec["search_dirs"] else []
    overrides = [*extra, *spec.get("hydra_overrides", []), *job["overrides"]]
    if job.get("action") == "resume":
        overrides.append("trainer.resume=auto")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=spec["config_dir"], version_base="1.3"):
        return compose(spec["config_name"], overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    from medchat import console
    from medchat.config import ConfigError
    from medchat.preemption import EXIT_INTERRUPTED, Interrupted

    console.install()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="[%(asctime)s][%(name)s][%(levelname)s] - "
                        "%(message)s")
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    jobs = spec["jobs"]
    try:
        cfgs = [compose_job(spec, job) for job in jobs]
        results = train_pack(cfgs, [j["run_dir"] for j in jobs], overrides=[j["overrides"] for j in jobs],
                             wandb_ids=[j.get("wandb_run_id") for j in jobs],
                             wandb_names=[j.get("wandb_name") for j in jobs])
    except Interrupted:
        return EXIT_INTERRUPTED
    except ConfigError as e:  # refused before any weights load: every job of the pack says why
        from medchat.rundir import write_status

        for job in jobs:
            write_status(Path(job["run_dir"]), "failed", reason=f"ConfigError: {e}")
        print(f"pack_process: error: {e}", file=sys.stderr)
        return 2
    for r in results:
        if "failed" in r:
            print(f"{r['run_dir']}: failed: {r['failed']}")
        else:
            print(f"{r['run_dir']}: eval loss {r['eval_loss_before']} -> {r['eval_loss_after']}")
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
