"""Train a LoRA / QLoRA adapter on medical conversations.

    python train.py                                   # offline default: tiny model, MedQuAD sample, CPU
    python train.py trainer=debug tracker=none        # a handful of steps, no tracker
    python train.py experiment=mistral7b_healthcaremagic   # a notebook recipe, on a GPU
    python train.py model=mistral7b lora=r32 -m lora.r=8,16,32 trainer.learning_rate=1e-4,2e-4
    python train.py -m --config-dir sweep --config-name rank_alpha    # an ablation from sweep/ (docs/sweeps.md)
    python train.py hydra.run.dir=runs/2026-11-22_10-00-00   # continue an unfinished run (trainer.resume=auto)
    python train.py --cfg job experiment=llama3_8b_chatdoctor                    # print the composed config

Everything happens in medchat.pipeline.train; this file only composes the config.
"""

import hydra
from omegaconf import DictConfig

from medchat import console

from medchat.config import register_configs
from medchat.rundir import register_resolvers
from medchat.tracking import is_main_process

console.install()  # known-harmless third-party lines hidden (medchat.console), before they are imported
register_configs()
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from medchat.pipeline import train
    from medchat.sweeps.state import rejoin

    # In a multirun whose launcher runs jobs in this process (basic, submitit): skip a finished job,
    # resume an unfinished one. The medchat launcher decides that before starting the job's process.
    metrics = rejoin(cfg) or train(cfg)
    before, after = metrics["eval_loss_before"], metrics["eval_loss_after"]
    if is_main_process():  # once per launch, not once per rank
        if before is not None and after is not None:
            print(f"eval loss (held-out rows): {before:.4f} before -> {after:.4f} after training")
        print(f"run dir: {metrics.get('run_dir')}")
        print(f"tracker: {metrics.get('tracker')}")
    return metrics["eval_loss_after"]  # what a Hydra sweeper minimises


if __name__ == "__main__":
    main()
