"""A pack's checks and each job's run plan, before any weights load (medchat.sweeps.pack_train's step 1).

- `check_jobs`: every check pipeline.train makes per job, and the pack's own (the jobs differ only in
  adapter-side keys, none needs what the packed loop does not serve);
- `eager_resolve`: a job's run plan as the packed loop runs it (its own eager step);
- `solo_compiles`: the warning for a pack whose jobs alone would compile, and so likely run faster unpacked.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from omegaconf import DictConfig, OmegaConf


def eager_resolve(cfg: DictConfig, hw=None):
    """A job's run plan as the packed loop runs it: resolved with trainer.compile=false, since the loop runs its own
    eager step (trainer.compile=true is refused by the launcher's grouping; auto's choice is dropped here), so the
    memory estimate is the eager step's and a fixed shape stays only where trainer.fixed_shape=true asks for it."""
    from medchat import plan as run_plan

    eager = copy.deepcopy(cfg)
    eager.trainer.compile = "false"
    plan = run_plan.resolve(eager, hw)
    return replace(plan, compile_reason="the packed loop runs its own eager step")


def solo_compiles(cfg: DictConfig, hw=None) -> str | None:
    """A warning when the job alone would compile its decoder layers (trainer.compile's auto choice), which the
    packed loop does not: on the Mistral-7B shape one H100 ran such a pack at 0.73x its compiled jobs one after
    another (bench/RESULTS.md, issue 24, call 20). None where the solo run is eager too."""
    from medchat import plan as run_plan

    solo = run_plan.resolve(cfg, hw)
    if not solo.compile:
        return None
    return ("launcher.pack: alone, these jobs would compile their decoder layers (trainer.compile: "
            f"{solo.compile_reason}); the packed loop runs eager, and on the Mistral-7B shape a 4-job pack measured "
            "0.73x the compiled jobs run one after another (docs/sweeps.md): launcher.pack=1 is likely faster here")


def check_jobs(cfgs: list[DictConfig]) -> None:
    """Every check pipeline.train makes before weights load, per job, and the pack's own: all jobs share
    every key but the adapter-side ones, and none needs what the packed loop does not serve."""
    from medchat.config import Config, ConfigError
    from medchat.config_checks import check_keys, validate
    from medchat.stages import stage_for
    from medchat.sweeps.grouping import shared_key, why_alone

    plains = []
    for cfg in cfgs:
        check_keys(cfg, Config)
        validate(cfg)
        stage_for(cfg.stage).check(cfg.dataset)
        plains.append(OmegaConf.to_container(cfg, resolve=True))
    for i, p in enumerate(plains):
        reason = why_alone(p)
        if reason:
            raise ConfigError(f"job {i} cannot train in a pack: {reason}")
        if shared_key(p) != shared_key(plains[0]):
            from medchat.sweeps.grouping import differing_keys

            raise ConfigError(f"job {i} differs from job 0 in more than adapter-side keys: "
                              f"{', '.join(differing_keys([plains[0], p]))}")
