"""Export a run for the Hub: the adapter, or the base with the adapter merged in, plus a model card.

    python -m medchat.export run_dir=RUN                          # RUN/export/adapter: adapter + tokenizer + card
    python -m medchat.export run_dir=RUN merge=true               # RUN/export/merged: 16-bit merged model + card
    python -m medchat.export run_dir=RUN merge=true dtype=float32 out=/tmp/merged
    HF_TOKEN=hf_... python -m medchat.export run_dir=RUN push=true repo_id=you/medchat-llama3-8b
    python -m medchat.export run_dir=RUN format=gguf [gguf.type=f16|q8_0]   # RUN/export/gguf: llama.cpp, Ollama

Merging reloads the base in 16-bit (bf16 where the machine supports it, else fp16), never quantized, and
folds the adapter in with PEFT's `merge_and_unload`: the folder then loads with
`AutoModelForCausalLM.from_pretrained(folder)` alone. Without `push=true` nothing leaves the machine: the
folder is written and what would be uploaded is printed.

`format=gguf` merges the same way (in float32 unless dtype= says otherwise) and writes one GGUF file for
llama.cpp with the tokenizer and chat template in its metadata, plus an Ollama Modelfile (medchat.gguf_export, medchat.modelfile).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig

from medchat.hydra_apps import quiet_libraries, quote_free_text, store_app_config, user_errors
from medchat.config import ConfigError

# Files of RUN/adapter that do not belong on the Hub: pickled training arguments and PEFT's stub card.
NOT_EXPORTED = {"training_args.bin", "README.md"}


FORMATS = ("hf", "gguf")


@dataclass
class GGUFSettings:
    type: str = "f16"  # f16 | q8_0 (norms and biases stay f32 in both, as llama.cpp's converter writes them)
    modelfile: bool = True  # false: the GGUF alone (for a chat template that is none of ChatML, Llama-3, [INST])


@dataclass
class ExportConfig:
    run_dir: Optional[str] = None
    format: str = "hf"  # hf: a transformers folder (adapter, or merged with merge=true) | gguf: merged, for llama.cpp/Ollama
    merge: bool = False  # false: the adapter alone; true: base + adapter merged into one model (format=gguf: always)
    out: Optional[str] = None  # null: RUN/export/adapter, RUN/export/merged or RUN/export/gguf
    dtype: str = "auto"  # of the merged weights: auto (bf16 where supported, else fp16; format=gguf: float32) | bfloat16 | float16 | float32
    gguf: GGUFSettings = field(default_factory=GGUFSettings)
    base: Optional[str] = None  # null: the run's base model
    check_base: bool = True  # false: skip the adapter's recorded base name (its shapes are still checked)
    overwrite: bool = False
    push: bool = False
    repo_id: Optional[str] = None  # you/name on the Hub
    private: bool = True
    commit_message: Optional[str] = None
    verbose: bool = False


store_app_config("export", ExportConfig, __doc__)


def merge_adapter(run_dir, dtype: str = "auto", base: str | None = None, check_base: bool = True):
    """(merged transformers model, the run's tokenizer): base reloaded unquantized in `dtype`, adapter folded in."""
    from medchat import run_models, runs

    return run_models.load_for_export(runs.open_run(run_dir), dtype, base, check_name=check_base)


def check_push(push: bool, repo_id: str | None) -> None:
    """Everything a push needs, checked before any weights are read."""
    if not push:
        return
    if not repo_id or repo_id.count("/") != 1:
        raise ConfigError(f"push=true needs repo_id=<user or org>/<name>, got {repo_id!r}")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise ConfigError("push=true but HF_HUB_OFFLINE is set: unset it to upload")
    from huggingface_hub import get_token

    if not get_token():
        raise ConfigError("push=true needs a Hugging Face token with write access: set HF_TOKEN or run `hf auth login`")


def _record_artifact(partial: Path, run, kind: str, dtype_name: str, out: Path) -> None:
    """medchat_export.json: what this folder is and which evaluation the card's numbers belong to."""
    import json

    from medchat.modelcard import evaluation_for

    where, metrics, of = evaluation_for(run.dir, kind, out)
    (partial / "medchat_export.json").write_text(json.dumps({
        "kind": kind, "dtype": dtype_name, "run_dir": str(run.dir),
        "card_numbers": {"evaluation": str(where) if where else None, "belong_to": of or None,
                         "artifact": metrics.get("artifact")},
    }, indent=2) + "\n")


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")


def export(run_dir, merge: bool = False, out: str | Path | None = None, dtype: str = "auto", base: str | None = None,
           check_base: bool = True, overwrite: bool = False, repo_id: str | None = None, format: str = "hf",
           gguf_type: str = "f16", modelfile: bool = True) -> Path:
    """Write the export folder (weights, tokenizer, README.md model card, training_config.yaml; format=gguf:
    model.gguf, Modelfile, training_config.yaml); return it."""
    from medchat import run_models, runs
    from medchat.hardware import detect
    from medchat.modelcard import build_card, config_yaml
    from medchat.plan import export_dtype

    check_format(format)
    gguf = format == "gguf"
    if gguf:
        from medchat import gguf_export

        gguf_export.check_type(gguf_type)
    run = runs.open_run(run_dir)
    run_dir = run.dir
    kind = "gguf" if gguf else "merged" if merge else "adapter"
    out = Path(out) if out else run_dir / "export" / kind
    if gguf:  # merged in float32 unless asked: the file's f16/q8_0 rounding is then the only one
        dtype_name = "float32" if dtype == "auto" else export_dtype(dtype, detect())
    else:
        dtype_name = export_dtype(dtype, detect()) if merge else "16-bit"
    tokenizer = run_models.run_tokenizer(run)
    path = run_models.check_base(run, base, check_name=check_base, tokenizer=tokenizer)  # before anything is written
    if gguf:  # everything format=gguf can refuse, from config.json and the tokenizer: no weights read yet
        from medchat.modeling import model_config

        plan = gguf_export.check(model_config(run.cfg.model, path, None if base else ""), tokenizer, gguf_type,
                                 run.cfg.dataset.prompt_format, modelfile)
    if out.is_file():
        raise FileExistsError(f"out={out} is a file; pass a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"out={out} already exists and is not empty; pass overwrite=true or another out=")
    # Written beside `out` and renamed at the end: a failed merge never leaves a half-written export.
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if gguf:
        model, tokenizer = run_models.load_for_export(run, dtype_name, base, checked=True)
        _write_gguf(partial, run, model, tokenizer, plan, dtype_name)
    elif merge:
        model, tokenizer = run_models.load_for_export(run, dtype_name, base, checked=True)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    else:
        for f in sorted((run_dir / "adapter").iterdir()):
            if f.is_file() and f.name not in NOT_EXPORTED:
                shutil.copy2(f, partial / f.name)
    if not gguf:
        build_card(run, kind, repo_id, dtype_name, folder=out).save(partial / "README.md")
        _record_artifact(partial, run, kind, dtype_name, out)
    (partial / "training_config.yaml").write_text(config_yaml(run))
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out


def _write_gguf(partial: Path, run, model, tokenizer, plan, dtype_name: str) -> None:
    """model.gguf, the Modelfile, and medchat_export.json saying what they are."""
    import json
    import logging

    from medchat import gguf_export
    from medchat.modelfile import MODELFILE, modelfile, system_prompt

    for warning in plan.warnings:
        logging.getLogger("medchat.export").warning(warning)
    name = f"medchat {Path(str(run.cfg.model.name_or_path)).name} ({run.dir.name})"
    gguf_export.write(model, tokenizer, partial / gguf_export.GGUF_FILE, plan, name=name)
    if plan.chat is not None:
        eos = model.generation_config.eos_token_id
        stops = tokenizer.convert_ids_to_tokens(eos if isinstance(eos, list) else [eos])
        (partial / MODELFILE).write_text(modelfile(plan.chat, stops, system_prompt(run.system_prompt())))
    (partial / "medchat_export.json").write_text(json.dumps({
        "kind": "gguf", "type": plan.gguf_type, "merged_in": dtype_name, "run_dir": str(run.dir),
        "architecture": plan.arch, "tokenizer": [plan.tokenizer_model, plan.pre],
        "chat_format": plan.chat.name if plan.chat else None, "warnings": plan.warnings,
    }, indent=2) + "\n")


def listing(folder: Path) -> list[tuple[str, int]]:
    return [(str(p.relative_to(folder)), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def describe(folder: Path) -> str:
    files = listing(folder)
    lines = [f"  {name:40s} {human_size(size):>10s}" for name, size in files]
    return "\n".join(lines + [f"  {len(files)} files, {human_size(sum(size for _, size in files))}"])


def push_folder(folder: Path, repo_id: str, private: bool = True, commit_message: str | None = None):
    """Create the model repo if needed and upload the folder in one commit; returns the commit info."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message=commit_message or "Upload model exported by medchat")


@user_errors("medchat.export", ExportConfig)
def run(cfg) -> Path:
    from medchat.runs import open_run

    check_format(cfg.format)
    if cfg.format == "gguf":
        from medchat.gguf_export import check_type

        check_type(cfg.gguf.type)
    open_run(cfg.run_dir)
    check_push(cfg.push, cfg.repo_id)
    quiet_libraries(cfg.verbose)
    out = export(cfg.run_dir, merge=cfg.merge, out=cfg.out, dtype=cfg.dtype, base=cfg.base, check_base=cfg.check_base,
                 overwrite=cfg.overwrite, repo_id=cfg.repo_id, format=cfg.format, gguf_type=cfg.gguf.type,
                 modelfile=cfg.gguf.modelfile)
    print(f"wrote {out}:\n{describe(out)}")
    target = f"{cfg.repo_id} ({'private' if cfg.private else 'public'})" if cfg.repo_id else "repo_id=<not set>"
    if cfg.push:
        commit = push_folder(out, cfg.repo_id, cfg.private, cfg.commit_message)
        print(f"pushed to {target}: {getattr(commit, 'commit_url', commit)}")
    else:
        print(f"not pushed (push=false): push=true would upload these files to the Hub model repo {target}")
    return out


@hydra.main(version_base="1.3", config_path=None, config_name="export")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    quote_free_text(("commit_message",))
    _hydra_main()


if __name__ == "__main__":
    main()
