"""The model card of an exported run: README.md with Hub metadata, written from the run dir alone.

Every number in it is read from a file of the run (metrics.json, split.json, provenance.json and, when
evaluate.py has been run, the full held-out RUN/eval/heldout-*/metrics.json); nothing is typed in by hand. Rendering uses
huggingface_hub's ModelCard with medchat's template (medchat/templates/model_card.md.jinja).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

from medchat.evaluation import locate
from medchat.inference import DISCLAIMER
from medchat.runs import Run, open_run

# Column order of the evaluation table; metrics evaluate.py adds later are appended after these.
EVAL_COLUMNS = ("bleu", "rouge1", "rouge2", "rougeL", "meteor", "bertscore_f1", "perplexity", "mean_answer_words",
                "eos_rate")
TRAINER_KEYS = ("num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "optim",
                "max_length", "packing", "precision", "seed")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def is_hub_id(name: str) -> bool:
    """`org/name` that is not a local directory: what the Hub's `base_model` metadata accepts."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def eval_table(eval_metrics: dict) -> str:
    """Markdown table, one row per evaluated model (adapter, base), one column per metric."""
    models = eval_metrics.get("models") or {}
    if not models:
        return ""
    seen = [k for m in models.values() for k in m]
    columns = [c for c in EVAL_COLUMNS if c in seen] + sorted(set(seen) - set(EVAL_COLUMNS))
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in models.items():
        label = {"adapter": "fine-tuned (adapter)", "base": "base model"}.get(name, name)
        lines.append(f"| {label} | " + " | ".join(_fmt(values.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _training_rows(lora, quant, trainer, metrics: dict) -> list[tuple[str, str]]:
    """The run's lora.*, quant.* and trainer.* sections and its metrics -> the card's training table."""
    rows = [
        ("LoRA rank / alpha / dropout", f"{lora.r} / {lora.lora_alpha} / {lora.lora_dropout}"),
        ("LoRA target modules", _fmt(metrics.get("target_modules") or lora.get("target_modules") or lora.targets)),
        ("rsLoRA", _fmt(lora.get("use_rslora"))),
    ]
    if lora.targets == "all_linear_lm_head":
        rows.append(("Trained in full", "lm_head"))
    quant_text = quant.mode if quant.mode in ("none", "int8") else (
        f"{quant.mode} 4-bit (QLoRA), double quant {quant.double_quant}, compute {quant.compute_dtype}")
    rows.append(("Base weights during training", quant_text))
    rows += [(k, _fmt(trainer.get(k))) for k in TRAINER_KEYS if k in trainer]
    if metrics.get("trainable_parameters"):
        share = 100 * metrics["trainable_parameters"] / metrics["total_parameters"]
        rows.append(("Trainable parameters", f"{metrics['trainable_parameters']:,} of "
                                             f"{metrics['total_parameters']:,} ({share:.2f}%)"))
    return rows


def _result_rows(metrics: dict) -> list[tuple[str, str]]:
    names = (("eval_loss_before", "eval loss before training"), ("eval_loss_after", "eval loss after training"),
             ("perplexity_before", "perplexity before"), ("perplexity_after", "perplexity after"),
             ("train_loss", "mean train loss"), ("global_step", "optimizer steps"),
             ("train_runtime_s", "train time (s)"), ("peak_memory_gib", "peak GPU memory (GiB)"))
    return [(label, _fmt(metrics.get(key))) for key, label in names if key in metrics]


def _usage(kind: str, repo_id: str, base: str) -> str:
    """A snippet that runs as written (tests/test_export.py executes it): apply_chat_template returns a
    BatchEncoding, so its fields are passed to generate() by name."""
    if kind == "merged":
        load = (f'from transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
                f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")\n')
    else:
        load = (f'from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
                f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "{repo_id}")\n')
    return (load +
            'messages = [{"role": "user", "content": "I have had a headache for three days."}]\n'
            'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, '
            'return_tensors="pt")\n'
            'output = model.generate(**inputs, max_new_tokens=256, do_sample=False)  # greedy, as evaluated\n'
            'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))')


def evaluation_for(run_dir: str | Path, kind: str, folder: str | Path | None) -> tuple[Path | None, dict, str]:
    """(evaluation folder, its metrics, what the numbers belong to) for the card of an export in `folder`.

    An evaluation of that very folder (evaluate.py artifact=FOLDER) wins. Otherwise the run's full held-out
    evaluation: for an adapter export those are the same adapter files; for a merged export they are NOT
    this folder's weights (evaluate.py merges into the dequantized 4-bit base, export into the 16-bit one),
    and the card says so."""
    if folder is not None:
        where, metrics = locate.full_heldout(run_dir, artifact=folder)
        if where is not None:
            return where, metrics, "this folder, as shipped (`evaluate.py artifact=` on it)"
    where, metrics = locate.full_heldout(run_dir)
    if where is None:
        return None, {}, ""
    if kind == "merged":
        return where, metrics, ("the run's adapter merged into its dequantized training base, not this folder's "
                                "16-bit merge (evaluate it with `python evaluate.py run_dir=RUN artifact=THIS_FOLDER` "
                                "and export again to quote its own numbers; docs/use.md gives the measured difference)")
    return where, metrics, "the run's adapter (the same files as this folder), merged into its dequantized base"


def _opened(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else open_run(run)


def card_context(run: Run | str | Path, kind: str, repo_id: str | None, dtype: str = "16-bit",
                 folder: str | Path | None = None) -> tuple[dict, dict]:
    """(metadata for the YAML header, values for the template); dtype: of the merged weights; folder: the
    export folder the card is for (its own evaluation is quoted when there is one)."""
    run = _opened(run)
    run_dir, cfg = run.dir, run.cfg
    metrics = _read_json(run_dir / "metrics.json")
    split = run.split(required=False)
    provenance = _read_json(run_dir / "provenance.json")
    # the full held-out evaluation, never a limit smoke run; of this folder when it was evaluated itself
    eval_folder, evaluation, eval_of = evaluation_for(run_dir, kind, folder)
    model, data = cfg.model, cfg.dataset
    base = model.name_or_path
    base_display = ("medchat's tiny offline Llama (built by code, random weights; for tests and demos)"
                    if base == "tiny" else f"`{base}`" + (f" (revision {model.revision})" if model.revision else ""))
    counts = split.get("counts") or metrics.get("data") or {}
    packages = provenance.get("packages", {})
    git = provenance.get("git") or {}
    trained_on = {"none": "unquantized", "int8": "8-bit (int8)"}.get(cfg.quant.mode, f"4-bit ({cfg.quant.mode})")
    system_prompt = run.system_prompt()
    generation = evaluation.get("generation") or {}
    meta = {
        "base_model": base if is_hub_id(base) else None,
        "datasets": [data.hub_id] if data.get("hub_id") else None,
        "library_name": "transformers" if kind == "merged" else "peft",
        "pipeline_tag": "text-generation",
        "tags": ["medical", "medchat", "lora", "sft", "trl"] + (["qlora"] if cfg.quant.mode in ("nf4", "fp4") else []),
        "model_name": repo_id,
    }
    values = {
        "title": repo_id or f"medchat: {model.name} fine-tuned on {data.name}",
        "disclaimer": DISCLAIMER,
        "summary": f"A {'merged model' if kind == 'merged' else 'LoRA adapter'} from fine-tuning {base_display} "
                   f"on doctor-patient conversations ({data.name}) with medchat (TRL SFT, PEFT LoRA"
                   f"{', 4-bit QLoRA' if cfg.quant.mode in ('nf4', 'fp4') else ''}), loss on the doctor's turns only.",
        "base_model_display": base_display,
        "kind_description": (f"the base model with the LoRA adapter merged into its weights, saved in {dtype}; "
                             "loads with transformers alone" if kind == "merged" else
                             "a PEFT LoRA adapter; load it on top of the base model"),
        "chat_format": ("the tokenizer's chat template (saved with it)" if data.get("prompt_format") != "plain"
                        else "plain text: `### Patient query: ... ### Doctor opinion:`") +
                       (f", medchat template `{model.chat_template}`" if model.get("chat_template") else ""),
        "system_prompt_display": f"`{system_prompt}`" if system_prompt else "none",
        "medchat_version": packages.get("medchat", "?"),
        "git_commit": (git.get("commit") or "unknown")[:12],
        "git_dirty": git.get("dirty"),
        "packages": ", ".join(f"{k} {packages[k]}" for k in ("torch", "transformers", "peft", "trl") if k in packages),
        "dataset_name": data.name,
        "dataset_where": f"Hub dataset `{data.hub_id}`" if data.get("hub_id") and not data.get("path")
                         else f"file `{data.path}`",
        "dataset_schema": f"{data.schema}, prompt format {data.get('prompt_format', 'chat_template')}",
        "fingerprint": split.get("fingerprint", "unknown"),
        "counts": [(k.replace("_", " "), _fmt(v)) for k, v in counts.items()],
        "train_rows": counts.get("train", "?"),
        "training_rows": _training_rows(cfg.lora, cfg.quant, cfg.trainer, metrics),
        "result_rows": _result_rows(metrics),
        "eval_table": eval_table(evaluation),
        "eval_rows": evaluation.get("rows", "?"),
        "eval_split": evaluation.get("split", "eval.jsonl"),
        "eval_of": eval_of,
        "eval_folder": eval_folder.relative_to(run_dir).as_posix() if eval_folder else "",
        "eval_generation": ", ".join(f"{k}={_fmt(v)}" for k, v in generation.items()),
        "eval_unavailable": sorted((evaluation.get("unavailable") or {}).items()),
        "usage": _usage(kind, repo_id or "PATH/TO/THIS/FOLDER", base),
        "quant_note": (f"The adapter was trained on the {trained_on} base; merged into the {dtype} base its answers can "
                       "differ slightly from the quantized model it was trained and evaluated with."
                       if kind == "merged" and cfg.quant.mode != "none" else
                       f"It was trained on the {trained_on} base model: load the base the same way to get answers like "
                       "the ones evaluated."),
    }
    return meta, values


def build_card(run: Run | str | Path, kind: str, repo_id: str | None = None, dtype: str = "16-bit",
               folder: str | Path | None = None):
    from huggingface_hub import ModelCard, ModelCardData

    meta, values = card_context(run, kind, repo_id, dtype, folder)
    data = ModelCardData(**{k: v for k, v in meta.items() if v is not None})
    template = resources.files("medchat").joinpath("templates/model_card.md.jinja").read_text()
    return ModelCard.from_template(data, template_str=template, **values)


def config_yaml(run: Run | str | Path) -> str:
    """The run's config as plain YAML, to ship beside the weights."""
    return OmegaConf.to_yaml(_opened(run).cfg, resolve=True)
