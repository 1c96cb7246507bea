"""Opening a finished run: the one module that reads a run dir's config and adapter and builds its models.

A run dir holds its composed config (RUN/.hydra/config.yaml when train.py made it, else RUN/config.yaml,
written by `pipeline.train`), its split (split.json, eval.jsonl: Run.split, Run.eval_rows), its plan (plan.json) and its adapter
(RUN/adapter: weights, adapter_config.json, the tokenizer with its chat template). evaluate.py, chat, the
app, export, the model card and the sweep post-mortem all open runs here:

    run = open_run("runs/2026-11-22_10-00-00")            # config on the schema; the adapter checked to exist
    model, tokenizer = load_for_generation(run)           # base (quantized as trained) + adapter, eval mode
    model, tokenizer = load_for_export(run, "auto")       # base in 16-bit with the adapter merged in

Whether the adapter belongs to the base about to be loaded is checked once, before any weights are read:
the base name the adapter recorded, and every adapter tensor's shape against the base architecture
instantiated on the meta device. Any mismatch is an AdapterMismatch naming both. Models built for
generation use the generation attention of a plan made for this machine (medchat.plan: never
flex_attention) and have the KV cache on.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medchat import hardware, modeling
from medchat import plan as run_plan
from medchat.config import Config, ConfigError
from medchat.formatting import stop_token_ids

log = logging.getLogger(__name__)
TINY_DIR = re.compile(r"^tiny-[0-9a-f]{12}$")
CONFIG_FILES = (".hydra/config.yaml", "config.yaml")
SPLIT_FILE, EVAL_FILE = "split.json", "eval.jsonl"  # written by medchat.attempt when a run starts


class AdapterMismatch(ConfigError):
    """The adapter was trained on another base model than the one about to be loaded."""


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
        return run_plan.read_saved(self.dir)


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


# ----- adapter vs base ---------------------------------------------------------------------------------

def _identity(name_or_path: str) -> str:
    """A base's name for comparison; the offline tiny model is named by its cache key, not its cache folder."""
    path = Path(str(name_or_path).rstrip("/")).expanduser()
    if TINY_DIR.match(path.name):
        return path.name
    return str(path.resolve()) if path.exists() else str(name_or_path)


def check_adapter_base(adapter: Path, model_cfg, path: str, check_name: bool = True, where: str = "",
                       revision: str | None = "", tokens: int | None = None) -> None:
    """Raise AdapterMismatch unless the adapter was trained on this base (its recorded name, unless check_name
    is false) and fits it (every adapter tensor's shape, on the meta device; `tokens`, the run tokenizer's
    length, within the base's embeddings). `where` says where `path` came from, for the message."""
    adapter = Path(adapter)
    recorded = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if check_name and recorded and _identity(recorded) != _identity(path):
        raise AdapterMismatch(
            f"the adapter in {adapter} was trained on base model {recorded!r}, but the base to load is {path!r}"
            f"{f' (from {where})' if where else ''}. An adapter only works on the model it was trained on; if "
            f"{path!r} is that model stored elsewhere, say so (chat/app/export: base=PATH check_base=false; "
            "evaluate.py: base_model=PATH); otherwise use the base it was trained on")
    from safetensors import safe_open

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: the adapter is incomplete")
    meta = modeling.meta_model(model_cfg, modeling.model_config(model_cfg, path, revision))
    with safe_open(str(weights), framework="pt") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        try:
            if ".lora_A." in name or ".lora_B." in name:
                module = meta.get_submodule(re.split(r"\.lora_[AB]\.", name)[0])
                want = module.in_features if ".lora_A." in name else module.out_features
                got = shape[1] if ".lora_A." in name else shape[0]
            else:
                want, got = list(meta.get_parameter(name).shape), shape
        except AttributeError:
            raise AdapterMismatch(f"the adapter in {adapter} has weights for {name}, which base model {path!r} "
                                  "lacks: it was trained on another architecture") from None
        if want != got:
            raise AdapterMismatch(f"the adapter in {adapter} does not fit base model {path!r}: {key} has shape "
                                  f"{shape}, the base expects {want}. It was trained on another base model")
    vocab = meta.get_input_embeddings().num_embeddings
    if tokens is not None and tokens > vocab:
        raise AdapterMismatch(f"the adapter's tokenizer in {adapter} has {tokens} tokens but base model {path!r} "
                              f"embeds only {vocab}: this adapter was not trained on this base")


def base_path(run: Run, base: str | None = None) -> str:
    return base or modeling.model_path(run.cfg.model)


def check_base(run: Run, base: str | None = None, check_name: bool = True, tokenizer=None) -> str:
    """The base to load (base=, else the run's) after checking the run's adapter against it; returns its path."""
    path = base_path(run, base)
    where = "base=" if base else f"model.name_or_path in {run.config_file}"
    check_adapter_base(run.adapter, run.cfg.model, path, check_name=check_name, where=where,
                       revision=None if base else "", tokens=len(tokenizer) if tokenizer is not None else None)
    return path


# ----- models ------------------------------------------------------------------------------------------

def generation_plan(model_cfg, quant_cfg, path: str, hw=None) -> run_plan.ModelPlan:
    """How to load a model for generation on this machine (the run may have trained on another one)."""
    return run_plan.model_plan(model_cfg, quant_cfg, hw or hardware.detect(), path)


def load_base(plan: run_plan.ModelPlan, dequantize: bool = False):
    """The base for generation (generation attention, KV cache on, eval mode); `dequantize`: 4/8-bit weights
    become model-dtype weights of the same values (what merging needs)."""
    model = modeling.load_model(plan, generation=True)
    if dequantize and plan.quant.mode != "none":
        model = model.dequantize()
    return model.eval()


def add_adapter(base, adapter: Path, merge: bool = False, trainable: bool = False):
    """PeftModel of `base` with the adapter (checked beforehand by check_adapter_base); `merge` folds it in;
    `trainable`: left in train mode with the adapter's weights trainable (a DPO stage continuing an SFT run)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(adapter), is_trainable=trainable)
    if trainable:
        return model
    if merge:
        model = model.merge_and_unload()
    return model.eval()


def run_tokenizer(run: Run):
    """The run's saved tokenizer (with the chat template it trained with)."""
    return modeling.load_tokenizer(run.cfg.model, path=str(run.adapter))


def set_stop_tokens(model, tokenizer) -> None:
    """The turn-ending token the adapter learned to emit stops generation, also in a saved generation_config."""
    gen = model.generation_config
    gen.eos_token_id = stop_token_ids(tokenizer, model)
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def load_for_generation(run: Run, quant: str | None = None, base: str | None = None, check_name: bool = True,
                        merge: bool = False, hw=None):
    """(base + the run's adapter, the run's tokenizer) for generation. quant: null = as trained."""
    tokenizer = run_tokenizer(run)
    path = check_base(run, base, check_name, tokenizer)
    quant_cfg = run.cfg.quant if quant is None else OmegaConf.merge(run.cfg.quant, {"mode": quant})
    plan = generation_plan(run.cfg.model, quant_cfg, path, hw)
    if base:
        plan = _without_revision(plan)
    model = add_adapter(load_base(plan, dequantize=merge), run.adapter, merge)
    set_stop_tokens(model, tokenizer)
    return model, tokenizer


def load_for_export(run: Run, dtype: str = "auto", base: str | None = None, check_name: bool = True, hw=None,
                    checked: bool = False):
    """(merged transformers model, the run's tokenizer): the base reloaded unquantized in `dtype` (auto: bf16
    where supported, else fp16), the adapter folded in. checked=True: the caller already ran check_base."""
    from medchat.config import QuantConfig

    hw = hw or hardware.detect()
    tokenizer = run_tokenizer(run)
    path = base_path(run, base) if checked else check_base(run, base, check_name, tokenizer)
    model_cfg = OmegaConf.merge(run.cfg.model, {"dtype": run_plan.export_dtype(dtype, hw)})
    plan = generation_plan(model_cfg, OmegaConf.structured(QuantConfig(mode="none")), path, hw)
    if base:
        plan = _without_revision(plan)
    merged = add_adapter(load_base(plan), run.adapter, merge=True)
    set_stop_tokens(merged, tokenizer)
    return merged, tokenizer


def _without_revision(plan: run_plan.ModelPlan) -> run_plan.ModelPlan:
    """A base given by path: the run's model.revision belongs to the Hub model it names, not to that path."""
    from dataclasses import replace

    return replace(plan, revision=None)
