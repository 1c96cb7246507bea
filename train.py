"""Train a LoRA / QLoRA adapter on medical conversations.

    python train.py                                   # offline default: tiny model, sample dialogues, CPU
    python train.py trainer=debug tracker=none        # a handful of steps, no tracker
    python train.py experiment=mistral7b_healthcaremagic   # a notebook recipe, on a GPU
    python train.py model=mistral7b lora=r32 -m lora.r=8,16,32 trainer.learning_rate=1e-4,2e-4
    python train.py trainer.resume=true hydra.run.dir=runs/2026-11-22_10-00-00   # continue a run
    python train.py --cfg job experiment=llama3_8b_chatdoctor                    # print the composed config

Everything happens in medchat.pipeline.train; this file only composes the config.
"""

import hydra
from omegaconf import DictConfig

from medchat.config import register_configs
from medchat.rundir import register_resolvers
from medchat.tracking import is_main_process

register_configs()
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from medchat.pipeline import train

    metrics = train(cfg)
    if is_main_process():  # once per launch, not once per rank
        print(f"eval loss before: {metrics['eval_loss_before']}  after: {metrics['eval_loss_after']}")
    return metrics["eval_loss_after"]  # what a Hydra sweeper minimises


if __name__ == "__main__":
    main()
