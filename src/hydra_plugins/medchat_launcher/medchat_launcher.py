"""medchat's Hydra launcher: every sweep job in its own process, several side by side, resumable.

The default for `-m` (conf/config.yaml selects it):

    python train.py -m trainer=debug lora.r=2,4 trainer.learning_rate=1e-4,2e-4 launcher.parallel=2 hydra.sweep.dir=S
    python train.py -m model=mistral7b lora.r=8,16,32 launcher.gpus_per_job=2     # 4 GPUs: 2 jobs at a time
    python train.py -m lora.r=8,16 hydra.launcher.dry_run=true                     # print the jobs, run nothing
    python train.py -m lora.r=8,16 trainer.learning_rate=1e-4,2e-4 launcher.pack=4   # 4 jobs, one process, one base

Per job: its run dir is fixed under the sweep dir before launch (a re-run finds it again by the job's
overrides), finished jobs are skipped, unfinished ones resume from their last checkpoint, and the sweep
ends with one status line per job (a failed job's error and log path under it); with Hydra's basic sweeper it
then exits non-zero, without a traceback, if any job failed.
Hydra sweepers (basic, medchat_optuna, Hydra's own Optuna) get one JobReturn per job whose value is what
train.py returns: the eval loss after training, read back from RUN/metrics.json.
"""


import copy
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class MedchatLauncherConf:
    _target_: str = "hydra_plugins.medchat_launcher.medchat_launcher.MedchatLauncher"
    # The user-facing knobs are medchat's top-level `launcher.parallel` / `launcher.gpus_per_job`.
    parallel: Any = "${launcher.parallel}"  # jobs at a time on CPU
    gpus_per_job: Any = "${launcher.gpus_per_job}"  # GPUs per job; 0: jobs on CPU even where GPUs exist
    gpus: Optional[List[str]] = None  # GPUs to hand out, e.g. [0,1,2,3]; default: CUDA_VISIBLE_DEVICES or all
    accelerate_args: List[str] = field(default_factory=list)  # e.g. ["--config_file", "fsdp.yaml"]
    script: Optional[str] = None  # the training script; default: the one this sweep was started with
    dry_run: bool = False  # compose and check every job, print its command, start nothing
    poll_s: float = 0.5


ConfigStore.instance().store(group="hydra/launcher", name="medchat", node=MedchatLauncherConf, provider="medchat")

# Hydra overrides that a job (run in RUN mode) needs too; sweep/launcher/sweeper ones stay with the sweep.
_PASS_THROUGH = ("hydra.job.", "hydra.verbose", "hydra.searchpath", "hydra/job_logging", "hydra/hydra_logging",
                 "hydra.job_logging", "hydra.hydra_logging", "hydra.output_subdir")


class JobFailed(RuntimeError):
    pass


class MedchatLauncher(Launcher):
    def __init__(self, parallel: int = 1, gpus_per_job: int = 1, gpus: Optional[Sequence[str]] = None,
                 accelerate_args: Sequence[str] = (), script: Optional[str] = None, dry_run: bool = False,
                 poll_s: float = 0.5) -> None:
        self.parallel = int(parallel)
        self.gpus_per_job = int(gpus_per_job)
        self.gpus = None if gpus is None else ",".join(str(g) for g in gpus)
        self.accelerate_args = [str(a) for a in accelerate_args]
        self.script = script
        self.dry_run = bool(dry_run)
        self.poll_s = float(poll_s)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    # -- what every job's command line shares ---------------------------------------------------------
    def _script(self) -> str:
        script = self.script or sys.argv[0]
        if not script.endswith(".py") or not Path(script).is_file():
            raise JobFailed(f"the medchat launcher runs each job as `python SCRIPT ...`, but {script!r} is not a "
                            "Python file; set hydra.launcher.script=path/to/train.py")
        return str(Path(script).resolve())

    def _base_args(self) -> List[str]:
        hc = self.config.hydra
        args = []
        for source in hc.runtime.config_sources:
            if source.schema != "file":
                continue
            if source.provider == "main":
                args.append(f"--config-path={source.path}")
            elif source.provider == "command-line":
                args.append(f"--config-dir={source.path}")
        args.append(f"--config-name={hc.job.config_name}")
        args += [o for o in hc.overrides.hydra if o.startswith(_PASS_THROUGH)]
        return args

    # -- Hydra's entry point --------------------------------------------------------------------------
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from medchat.sweeps.launch import make_slots
        from medchat.sweeps.pack_launch import PackRunner, work_items
        from medchat.sweeps.summary import print_status, save_status
        from medchat.sweeps.state import gpu_ids

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs, configs = self._plan(job_overrides, initial_job_idx, sweep_dir)
        slots = make_slots(gpu_ids(self.gpus) if self.gpus_per_job > 0 else [], self.gpus_per_job, self.parallel)
        groups = self._groups(jobs, configs)
        config_dir, search_dirs = self._config_dirs()
        runner = PackRunner(slots, sweep_dir.name, self._script(), self._base_args(), self.accelerate_args,
                            self.poll_s, sweep_dir=sweep_dir, config_dir=config_dir,
                            config_name=str(self.config.hydra.job.config_name), search_dirs=search_dirs)
        where = f"{len(slots)} at a time on " + (
            "GPUs " + " | ".join(",".join(s.gpus) for s in slots) if slots[0].gpus else "CPU")
        if self.dry_run:
            for job in jobs:
                print(f"#{job.num} {job.action:6s} {job.run_dir} (W&B name {job.wandb_name})\n"
                      f"    {' '.join(runner.job_args(job))}")
            self._print_groups(jobs, configs, groups)
            print(f"dry run: {len(jobs)} jobs into {sweep_dir}, {where}; nothing started")
            return [self._job_return(job, cfg, None) for job, cfg in zip(jobs, configs)]
        todo = sum(j.action != "skip" for j in jobs)
        done = sum(j.action == "skip" and (j.status or {}).get("state") == "done" for j in jobs)
        log.info("medchat launcher: %d jobs into %s (%d to run, %d already done, %d refused), %s",
                 len(jobs), sweep_dir, todo, done, len(jobs) - todo - done, where)
        runner.run([item for item in work_items(jobs, groups) if item.status is None])
        save_status(sweep_dir, jobs)
        print_status(sweep_dir, jobs)  # one line per job; a failed one's error and log path under it
        failed = [j for j in jobs if j.status and j.status.get("state") != "done"]
        if failed and _stops_on_failure(self.config):
            # Hydra's basic sweeper would raise the first failure through Hydra's traceback printer: the summary
            # above already says what failed and where its log is, so end here, non-zero, without a traceback
            raise SystemExit(f"medchat launcher: {len(failed)} of {len(jobs)} jobs failed (see above)")
        return [self._job_return(job, cfg, job.status) for job, cfg in zip(jobs, configs)]

    # -- launcher.pack: which jobs share a process (medchat.sweeps.grouping) ----------------------------
    def _groups(self, jobs, configs):
        """Groups of the jobs that will run (none refused, done or skipped), in job order."""
        from medchat.sweeps.grouping import group_jobs

        plain = [OmegaConf.to_container(_task_cfg(cfg), resolve=True) if job.status is None and job.action != "skip"
                 else None for job, cfg in zip(jobs, configs)]
        packs = {int(p["launcher"]["pack"]) for p in plain if p is not None}
        pack = max(packs) if packs else 1
        return group_jobs(plain, pack, gpus_per_job=self.gpus_per_job, accelerate_args=self.accelerate_args)

    def _print_groups(self, jobs, configs, groups) -> None:
        from medchat.sweeps.grouping import differing_keys

        print("processes (launcher.pack):")
        for g in groups:
            members = [jobs[i] for i in g.members]
            nums = ", ".join(f"#{j.num}" for j in members)
            if g.packed:
                keys = differing_keys([OmegaConf.to_container(_task_cfg(configs[i]), resolve=True)
                                       for i in g.members])
                print(f"  pack of {len(members)} in one process: {nums} (they differ only in {', '.join(keys)})")
            else:
                print(f"  alone: {nums}: {g.reason}")

    def _config_dirs(self):
        """The primary config dir and any --config-dir: how pack_train composes each job as train.py does."""
        main, extra = None, []
        for source in self.config.hydra.runtime.config_sources:
            if source.schema != "file":
                continue
            if source.provider == "main":
                main = str(source.path)
            elif source.provider == "command-line":
                extra.append(str(source.path))
        return main, extra

    def _plan(self, job_overrides, initial_job_idx: int, sweep_dir: Path):
        from medchat.config import Config, ConfigError
        from medchat.config_checks import check_keys, validate
        from medchat.launch_checks import check_model_reachable
        from medchat.rundir import read_status
        from medchat.stages import stage_for
        from medchat.sweeps.launch import Job
        from medchat.sweeps.state import identity, new_wandb_id, place, plan, read_job, write_job

        jobs, configs, taken = [], [], set()
        saved = HydraConfig.instance().cfg
        try:
            for i, overrides in enumerate(job_overrides):
                num = initial_job_idx + i
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(cfg):
                    cfg.hydra.job.id = num
                    cfg.hydra.job.num = num
                HydraConfig.instance().set_config(cfg)  # hydra.sweep.subdir may use ${hydra.job.*}
                run_dir = place(sweep_dir, overrides, str(OmegaConf.select(cfg, "hydra.sweep.subdir")), taken)
                with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
                    cfg.hydra.runtime.output_dir = str(run_dir)
                decision = plan(run_dir)
                record = read_job(run_dir) or {"overrides": identity(overrides), "num": num,
                                               "wandb_run_id": new_wandb_id()}
                job = Job(num=num, overrides=list(overrides), identity=record["overrides"], run_dir=run_dir,
                          action=decision.action, wandb_run_id=record.get("wandb_run_id"))
                if decision.action == "skip":
                    job.status = read_status(run_dir)
                try:
                    task = _task_cfg(cfg)
                    # a model neither local nor cached while the Hub is off or does not answer (one HEAD per model)
                    check_model_reachable(task.model.name_or_path, task.model.revision, probe_hub=not self.dry_run)
                    check_keys(task, Config)  # a sweep axis naming a missing key (`+key=a,b`)
                    validate(task)
                    stage_for(task.stage).check(task.dataset)  # stage.*, by the stage itself (medchat.stages)
                except ConfigError as e:  # fail this job now, before anything starts
                    job.action = "skip"
                    job.status = {"state": "failed", "reason": f"ConfigError: {e}"}
                if not self.dry_run and job.status is None and not (run_dir / "job.json").exists():
                    write_job(run_dir, {**record, "sweep_dir": str(sweep_dir)})
                jobs.append(job)
                configs.append(cfg)
        finally:
            HydraConfig.instance().cfg = saved
        from medchat.sweeps.naming import sweep_names

        for job, name in zip(jobs, sweep_names([j.identity for j in jobs], [j.num for j in jobs])):
            job.wandb_name = name
        return jobs, configs

    def _job_return(self, job, cfg: DictConfig, status: Optional[dict]) -> JobReturn:
        ret = JobReturn()
        ret.overrides = list(job.overrides)
        ret.cfg = _task_cfg(cfg)
        hydra_cfg = copy.deepcopy(cfg)
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            for key in [k for k in hydra_cfg if k != "hydra"]:
                del hydra_cfg[key]
        ret.hydra_cfg = hydra_cfg
        ret.working_dir = os.getcwd()
        ret.task_name = str(cfg.hydra.job.name)
        if status is None:  # dry run
            ret.status = JobStatus.COMPLETED
            ret.return_value = None
        elif status["state"] == "done":
            ret.status = JobStatus.COMPLETED
            metrics = json.loads((job.run_dir / "metrics.json").read_text())
            ret.return_value = metrics.get("eval_loss_after")
        else:
            ret.status = JobStatus.FAILED
            ret.return_value = JobFailed(
                f"job #{job.num} ({' '.join(job.identity)}) failed: {status.get('reason', '?')}; "
                f"log: {job.run_dir / 'console.log'}")
        return ret


def _stops_on_failure(config: DictConfig) -> bool:
    """Hydra's basic sweeper (the default for -m) ends the sweep at the first failed job; sweepers that search
    (Optuna) read a failed trial's JobReturn and go on, so they get it."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    return target.endswith("BasicSweeper")


def _task_cfg(cfg: DictConfig) -> DictConfig:
    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task
