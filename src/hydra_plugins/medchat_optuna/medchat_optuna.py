"""A Bayesian search (Optuna) as a Hydra sweeper, with a study that survives being stopped.

Why not Hydra's own `hydra-optuna-sweeper`: its latest release (1.3.0) pins optuna<3, i.e. Optuna 2.10
from 2021, and its SQLite storage (the only way to resume a study) fails with SQLAlchemy 2 unless
sqlalchemy<2 and alembic<1.14 are pinned too. Those pins would hold back every other package of a user's
environment that touches SQLAlchemy. This sweeper uses current Optuna (>=4) and reads the same search
space syntax as that plugin (Hydra's override grammar), so its configs carry over:

    hydra:
      sweeper:
        params:
          lora.r: choice(8, 16, 32, 64)
          trainer.learning_rate: tag(log, interval(1e-5, 1e-3))

    python train.py -m --config-dir sweep --config-name bayes hydra.sweep.dir=sweeps/bayes

Trials run through the configured launcher (the medchat launcher by default: each trial its own process,
`hydra.sweeper.n_jobs` at a time). The study lives in SWEEP_DIR/optuna.db: run the same command again
and it continues up to `n_trials` completed trials; trials left running by a stopped sweep and failed
trials are asked again with the same parameters, which the launcher maps to the same run dirs, so they
resume from their last checkpoint. The best trial is written to SWEEP_DIR/optimization_results.yaml.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class MedchatOptunaConf:
    _target_: str = "hydra_plugins.medchat_optuna.medchat_optuna.MedchatOptunaSweeper"
    direction: str = "minimize"  # the job's return value: train.py returns the eval loss after training
    n_trials: int = 20  # completed trials the study should reach
    n_jobs: int = 1  # trials launched together
    sampler: str = "tpe"  # tpe | random | gp | cmaes
    seed: Optional[int] = None
    study_name: str = "medchat"
    storage: Optional[str] = None  # default: sqlite:///SWEEP_DIR/optuna.db
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="medchat_optuna", node=MedchatOptunaConf,
                             provider="medchat")


def _as_override_value(value: Any) -> str:
    return Override._get_value_element_as_str(value)


def distribution(override: Override):
    """A Hydra sweep (choice / range / interval, `tag(log, ...)` for a log scale) as an Optuna distribution."""
    import optuna.distributions as d

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return d.CategoricalDistribution([v if isinstance(v, (int, float, str, bool)) or v is None
                                          else _as_override_value(v) for v in sweep.list])
    if isinstance(sweep, RangeSweep):
        values, x = [], sweep.start
        while (x < sweep.stop) if sweep.step > 0 else (x > sweep.stop):
            values.append(x)
            x += sweep.step
        return d.CategoricalDistribution(values)
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return d.IntDistribution(sweep.start, sweep.end, log=log_scale)
        return d.FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a search space (use choice, range or interval)")


def make_sampler(name: str, seed: Optional[int]):
    import optuna

    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                "gp": optuna.samplers.GPSampler, "cmaes": optuna.samplers.CmaEsSampler}
    if name not in samplers:
        raise ValueError(f"hydra.sweeper.sampler={name!r} is not one of {', '.join(samplers)}")
    return samplers[name](seed=seed)


class MedchatOptunaSweeper(Sweeper):
    def __init__(self, direction: str, n_trials: int, n_jobs: int, sampler: str, seed: Optional[int],
                 study_name: str, storage: Optional[str], params: Optional[Dict[str, str]] = None) -> None:
        self.direction = direction
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.sampler = sampler
        self.seed = seed
        self.study_name = study_name
        self.storage = storage
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _space(self, arguments: List[str]):
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        fixed, space = {}, {}
        for override in parser.parse_overrides(lines):  # later entries (the command line) win
            key = override.get_key_element()
            fixed.pop(key, None)
            space.pop(key, None)
            if override.is_sweep_override():
                space[key] = distribution(override)
            else:
                fixed[key] = override.input_line
        return list(fixed.values()), space

    def _recover(self, study) -> None:
        """Ask again, with the same parameters, the trials a stopped sweep left running and those that failed."""
        from optuna.trial import TrialState

        retried = set(study.user_attrs.get("retried", []))
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.RUNNING:
                study.tell(trial.number, state=TrialState.FAIL)
            elif trial.state != TrialState.FAIL or trial.number in retried:
                continue
            study.enqueue_trial(trial.params, skip_if_exists=False)
            retried.add(trial.number)
            log.info("trial %d (%s) will be asked again", trial.number, trial.params)
        study.set_user_attr("retried", sorted(retried))

    def sweep(self, arguments: List[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        fixed, space = self._space(arguments)
        if not space:
            raise ValueError("hydra.sweeper.params defines no search space (choice, range or interval)")
        study = optuna.create_study(study_name=self.study_name, storage=self.storage or f"sqlite:///{sweep_dir}/optuna.db",
                                    sampler=make_sampler(self.sampler, self.seed), direction=self.direction,
                                    load_if_exists=True)
        if study.trials and self.seed is not None:
            # A continued study must not replay the first session's random draws (the same trials again).
            study.sampler = make_sampler(self.sampler, self.seed + len(study.trials))
        self._recover(study)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        remaining = self.n_trials - done
        log.info("Optuna study %r in %s: %d of %d trials complete", self.study_name, sweep_dir, done, self.n_trials)
        failed, results = [], []
        while remaining > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            batch = [[*fixed, *(f"{k}={_as_override_value(t.params[k])}" for k in space)] for t in trials]
            returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns):
                value = ret._return_value if ret.status.name == "COMPLETED" else None
                if isinstance(value, (int, float)):
                    study.tell(trial, float(value))
                else:
                    study.tell(trial, state=TrialState.FAIL)
                    failed.append(f"trial {trial.number} ({' '.join(ret.overrides)}): "
                                  f"{ret._return_value if value is None else f'returned {value!r}'}")
            results.append(returns)
            remaining -= len(trials)
        self._report(study, sweep_dir)
        if failed:
            raise RuntimeError(f"{len(failed)} trial(s) failed; run the same command again to retry them:\n  "
                               + "\n  ".join(failed))
        return results

    def _report(self, study, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return
        best = study.best_trial
        OmegaConf.save(OmegaConf.create({"name": "optuna", "best_trial": best.number, "best_value": best.value,
                                         "best_params": best.params}), sweep_dir / "optimization_results.yaml")
        print(f"best trial {best.number}: {best.value} with {best.params} (saved in "
              f"{sweep_dir / 'optimization_results.yaml'}; the whole study: {sweep_dir / 'optuna.db'})")
