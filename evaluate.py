"""Evaluate a training run on its held-out rows, or a base model; optionally on medical MCQ benchmarks.

    python evaluate.py run_dir=runs/RUN                       # writes RUN/eval/{predictions.jsonl,metrics.json,summary.md}
    python evaluate.py run_dir=runs/RUN compare_base=true     # the base model too, side by side
    python evaluate.py run_dir=runs/RUN model=mistral7b       # a preset base model on the run's held-out rows
    python evaluate.py run_dir=runs/RUN task=mcq mcq.benchmarks=[../shared/data/mcq_eval]   # RUN/eval/mcq/
    python evaluate.py --cfg job run_dir=runs/RUN             # print the composed config

Everything happens in medchat.evaluation; this file only composes the config. (Inside medchat, the
`evaluate` library is always imported through medchat.evaluation._lib, never this file.)
"""

import hydra
from omegaconf import DictConfig

from medchat import console

from medchat.config import register_configs
from medchat.evaluation.config import register_evaluate_configs

console.install()  # known-harmless third-party lines hidden (medchat.console), before they are imported
register_configs()  # the model and quant groups are typed by the training schema's dataclasses
register_evaluate_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from medchat.evaluation.runner import run

    out_dir = run(cfg)
    print(f"evaluation written to {out_dir}")


if __name__ == "__main__":
    main()
