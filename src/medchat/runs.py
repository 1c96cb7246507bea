"""Opening a finished run dir: the one module that reads a run's config, split files and adapter records.

A run dir holds its composed config (RUN/.hydra/config.yaml when train.py made it, else RUN/config.yaml,
written by `pipeline.train`), its split (split.json, eval.jsonl: Run.split, Run.eval_rows), its plan (plan.json) and its adapter
(RUN/adapter: weights, adapter_config.json, the tokenizer with its chat template). evaluate.py, chat, the
app, export, the model card and the sweep post-mortem all open runs here:

    run = open_run("runs/2026-11-22_10-00-00")            # config on the schema; the adapter checked to exist

Building models from an opened run (the adapter checked against its base first) is medchat.run_models; the
W&B run a run trained into is `wandb_run`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medchat.config import Config, ConfigError

log = logging.getLogger(__name__)
CONFIG_FILES = (".hydra/config.yaml", "config.yaml")
SPLIT_FILE, EVAL_FILE = "split.json", "eval.jsonl"  # written by medchat.attempt when a run starts


@dataclass(frozen=True)
class Run:
    dir: Path
    cfg: DictConfig  # the run's config, merged onto the training schema
    config_file: Path

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    def adapter_base(self) -> str | None:
        """The base model name the adapter recorded when it was saved."""
        return json.loads((self.adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")

    def adapter_targets(self) -> list[str]:
        """The module names the adapter was trained on (PEFT saves a list, or one regex string)."""
        targets = json.loads((self.adapter / "adapter_config.json").read_text())["target_modules"]
        return [targets] if isinstance(targets, str) else sorted(targets)

    def system_prompt(self) -> str | None:
        """The system prompt the run trained with: dataset.system_prompt, else the one every training
        conversation shared, as training recorded it in split.json (`train_system_prompt`). Never guessed
        from the held-out rows. None: there was none (the chat template's default applied, as in training),
        the training rows' differed, or the run predates the record."""
        if self.cfg.dataset.get("system_prompt"):
            return self.cfg.dataset.system_prompt
        split = self.split(required=False)
        if "train_system_prompt" not in split:
            log.warning("%s/%s does not record the training system prompt (a run from before it was recorded): "
                        "none is used; pass system_prompt=... if the run trained with one", self.dir, SPLIT_FILE)
        return split.get("train_system_prompt")

    def split(self, why: str = "", required: bool = True) -> dict:
        """RUN/split.json: the hashes of both sides of the run's split and its counts (missing: DataError,
        with `why`, or {} when not required)."""
        path = self.dir / SPLIT_FILE
        if not path.is_file():
            if not required:
                return {}
            from medchat.data import DataError

            raise DataError(f"{self.dir} has no {SPLIT_FILE}{why or ': not a medchat run dir, or its training never started'}")
        return json.loads(path.read_text())

    def split_hashes(self, why: str = "") -> tuple[frozenset[str], frozenset[str]]:
        """(train, eval): the conversation hashes of both sides of the run's split (split.json)."""
        manifest = self.split(why)
        return (frozenset(r["hash"] for r in manifest.get("train", [])),
                frozenset(r["hash"] for r in manifest.get("eval", [])))

    def split_questions(self, why: str = "") -> tuple[frozenset[str], frozenset[str]]:
        """(train, eval): the normalised-question hashes of both sides (data.prepare.question_hash); empty for
        runs whose split.json predates them, where callers have the conversation hashes alone."""
        manifest = self.split(why)
        return (frozenset(r["question"] for r in manifest.get("train", []) if "question" in r),
                frozenset(r["question"] for r in manifest.get("eval", []) if "question" in r))

    @property
    def eval_file(self) -> Path:
        return self.dir / EVAL_FILE

    def eval_rows(self) -> list[dict]:
        """RUN/eval.jsonl's conversations as written (checking them against the split is the caller's job)."""
        if not self.eval_file.is_file():
            from medchat.data import DataError

            raise DataError(f"{self.dir} has no {EVAL_FILE}: not a medchat run dir, or its training never started")
        return read_conversations(self.eval_file)

    def trained_plan(self) -> dict | None:
        """RUN/plan.json: what the run resolved on the machine it trained on (None for older runs)."""
        from medchat.plan import read_saved

        return read_saved(self.dir)


# ----- the run dir -------------------------------------------------------------------------------------

def read_conversations(path: str | Path) -> list[dict]:
    """A JSONL file of {"messages": [...], "id"?: ..., "row"?: ...} -> records with id and row filled in."""
    from medchat.data import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {n}: not JSON ({e})") from None
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                     for m in messages):
            raise DataError(f"{path} line {n}: needs \"messages\": a list of {{role, content}}")
        records.append({"id": str(record.get("id", n - 1)), "row": record.get("row", n - 1), "messages": messages})
    return records


def config_file(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    for name in CONFIG_FILES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise FileNotFoundError(f"run_dir={run_dir}: no config found (expected .hydra/config.yaml or config.yaml), so "
                            "it cannot say which base model it trained")


def read_config(run_dir: str | Path, on_schema: bool = True) -> DictConfig:
    """The run's config on the training schema (unresolved: Hydra's copy keeps its interpolations);
    on_schema=False: as written (the sweep post-mortem, which must close a job whatever its config holds)."""
    path = config_file(run_dir)
    if not on_schema:
        return OmegaConf.load(path)
    try:
        return OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path))
    except Exception as e:  # an unknown key or a wrongly typed value: name the file
        raise ConfigError(f"{path} does not fit medchat's config schema: {e}") from e


def artifact_kind(path: Path) -> str:
    """An exported folder (medchat.export) -> "adapter" (PEFT files) or "merged" (a full model), else a
    ConfigError: what evaluate.py artifact= scores."""
    if not path.is_dir():
        raise ConfigError(f"artifact={path}: no such directory")
    if (path / "adapter_config.json").is_file():
        return "adapter"
    if (path / "config.json").is_file():
        return "merged"
    raise ConfigError(f"artifact={path}: neither an adapter (adapter_config.json) nor a model (config.json); "
                      "export one with python -m medchat.export run_dir=RUN [merge=true]")


def wandb_run(run_dir: str | Path | None) -> tuple[str, dict] | None:
    """The W&B run a finished run trained into: (its id from RUN/wandb_run_id, the run's tracker config as a
    plain dict), or None when it has no saved id, no config, or did not train with tracker.backend=wandb."""
    from medchat.tracking import saved_run_id

    if run_dir is None or (run_id := saved_run_id(Path(run_dir))) is None:
        return None
    try:
        tracker_cfg = read_config(run_dir, on_schema=False).get("tracker", {})
    except FileNotFoundError:
        return None
    try:
        tracker = OmegaConf.to_container(tracker_cfg, resolve=True)
    except Exception:  # Hydra's copy may interpolate ${hydra:...}, unresolvable outside Hydra: take it as written
        tracker = OmegaConf.to_container(tracker_cfg, resolve=False)
    return (run_id, tracker) if tracker.get("backend") == "wandb" else None


def _status(run_dir: Path) -> str:
    from medchat.rundir import read_status

    status = read_status(run_dir)
    if not status:
        return ""
    reason = f": {status['reason']}" if status.get("reason") else ""
    return f" (the run's status is {status['state']!r}{reason})"


def open_run(run_dir: str | Path | None, need_adapter: bool = True) -> Run:
    """The run dir checked (it exists, holds a config and, unless need_adapter=False, a trained adapter) and
    its config read; every message says what is missing."""
    if run_dir is None or str(run_dir).strip() == "":
        raise ConfigError("run_dir is not set: pass run_dir=DIR, a directory made by train.py")
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir={run_dir} does not exist or is not a directory")
    if (run_dir / "adapter_config.json").is_file() and not (run_dir / "adapter").is_dir():
        raise FileNotFoundError(f"run_dir={run_dir} is an adapter folder, not a run dir: pass its parent, "
                                f"run_dir={run_dir.parent}")
    path = config_file(run_dir)
    if need_adapter and not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise FileNotFoundError(f"run_dir={run_dir} has no trained adapter: {run_dir}/adapter/adapter_config.json "
                                f"is missing{_status(run_dir)}")
    return Run(run_dir, read_config(run_dir), path)
