"""A packed job's weights: the lm_head copy a job trains in full, its adapter as its solo run writes it, and its
checkpoints (what pack_train saves every trainer.save_steps and resumes from)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from medchat.sweeps.packed import job_state_dict

STATE_FILE = "pack_state.pt"  # a packed checkpoint's extra state: dropout generator, losses, tokens


# ----- lm_head trained in full (lora.targets=all_linear_lm_head) ------------------------------------------

class PackedHead(torch.nn.Module):
    """The output projection for a pack: each job with lora.targets=all_linear_lm_head trains its own full copy
    of lm_head (PEFT's modules_to_save: a copy of the base module, trained), the others use the frozen base."""

    def __init__(self, base: torch.nn.Linear, ctx, owners: list[int]):
        super().__init__()
        self.base_layer, self.ctx = base, ctx
        self.copies = torch.nn.ParameterDict({str(j): torch.nn.Parameter(base.weight.detach().clone().float(),
                                                                         requires_grad=True) for j in owners})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = []
        for j, start, stop in self.ctx.blocks(x.shape[0]):
            x_j = x[start:stop]
            if str(j) in self.copies:
                w = self.copies[str(j)]
                pieces.append(torch.nn.functional.linear(x_j.to(w.dtype), w, self.base_layer.bias))
            else:
                pieces.append(self.base_layer(x_j))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)


HEAD_KEY = "base_model.model.lm_head.weight"  # PEFT's saved name of a modules_to_save lm_head


def job_weights(pack, head: PackedHead | None, j: int) -> dict[str, torch.Tensor]:
    out = job_state_dict(pack, j)
    if head is not None and str(j) in head.copies:
        out[HEAD_KEY] = head.copies[str(j)].detach().to("cpu", copy=True)
    return out


def job_parameters(pack, head: PackedHead | None, j: int) -> list[torch.nn.Parameter]:
    params = list(pack.params[j])
    if head is not None and str(j) in head.copies:
        params.append(head.copies[str(j)])
    return params


def load_job_weights(pack, head: PackedHead | None, j: int, weights: dict[str, torch.Tensor]) -> None:
    """A checkpoint's adapter (PEFT names) back into job j's parameters."""
    prefix = "base_model.model."
    with torch.no_grad():
        for key, layer in pack.layers.items():
            if str(j) in layer.lora_A:
                layer.lora_A[str(j)].weight.copy_(weights[f"{prefix}{key}.lora_A.weight"])
                layer.lora_B[str(j)].weight.copy_(weights[f"{prefix}{key}.lora_B.weight"])
        if head is not None and str(j) in head.copies:
            head.copies[str(j)].copy_(weights[HEAD_KEY])


def save_adapter(pack, head, j: int, member, tokenizer, directory: Path) -> None:
    """Job j's adapter as its solo run writes RUN/adapter: PEFT's weights and config (modules_to_save for a
    trained lm_head), and the tokenizer (training.save_adapter writes it beside the adapter)."""
    from peft.utils.constants import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import save_file

    from medchat import modeling

    directory.mkdir(parents=True, exist_ok=True)
    save_file(job_weights(pack, head, j), str(directory / SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})
    config = modeling.lora_config(member.cfg.lora, list(member.plan.target_modules))
    config.base_model_name_or_path = member.plan.model.path
    config.save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))


# ----- checkpoints ----------------------------------------------------------------------------------------

def save_checkpoint(pack, head, member, ctx, device) -> Path:
    """RUN/checkpoints/checkpoint-N of one job: its adapter (PEFT names, what resume.check_checkpoint reads),
    optimizer, scheduler, dropout generator, losses and tokens; trainer_state.json last (a checkpoint without it
    is incomplete and skipped, medchat.resume), the folder written beside and renamed."""
    from medchat import training

    root = training.checkpoints_dir(member.run_dir)
    final = root / f"checkpoint-{member.step}"
    partial = root / f".checkpoint-{member.step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    save_adapter(pack, head, member.index, member, None, partial)
    torch.save(member.optimizer.state_dict(), partial / "optimizer.pt")
    torch.save(member.scheduler.state_dict(), partial / "scheduler.pt")
    torch.save({"step": member.step, "dropout_rng": ctx.generator(member.index, device).get_state(),
                "losses": member.losses, "tokens": member.tokens}, partial / STATE_FILE)
    (partial / "trainer_state.json").write_text(json.dumps(
        {"global_step": member.step, "max_steps": member.max_steps, "num_input_tokens_seen": member.tokens,
         "log_history": member.log_history, "packed": True}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    limit = member.args.save_total_limit
    if limit:
        kept = sorted((p for p in root.glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
                      key=lambda p: int(p.name.split("-")[1]))
        for old in kept[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(pack, head, member, ctx, device, checkpoint: str) -> None:
    from peft.utils.constants import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import load_file

    path = Path(checkpoint)
    load_job_weights(pack, head, member.index, load_file(str(path / SAFETENSORS_WEIGHTS_NAME)))
    member.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    member.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    state = torch.load(path / STATE_FILE, weights_only=False)
    ctx.generator(member.index, device).set_state(state["dropout_rng"])
    member.step, member.losses, member.tokens = state["step"], list(state["losses"]), state["tokens"]
    member.tokens_at_start = member.tokens
    member.log_history = json.loads((path / "trainer_state.json").read_text()).get("log_history", [])
