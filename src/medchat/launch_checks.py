"""Checks that refuse a launch before anything is loaded, and the advice printed when a step runs out of memory.

Each takes the machine as a `medchat.hardware.Hardware` value, so a CPU test can ask what a GPU machine
(or a two-process launch on one GPU) would be told.
"""

from __future__ import annotations

from medchat.config import ConfigError
from medchat.hardware import Hardware


def check_processes_vs_gpus(hw: Hardware) -> None:
    """More processes on a machine than visible GPUs makes two ranks share a GPU (NCCL refuses or hangs):
    refuse before anything is loaded."""
    if not hw.cuda:
        return
    gpus = hw.gpus
    if hw.world_size == 1 and gpus > 1:
        # One process would see several GPUs: Trainer would wrap the model in nn.DataParallel, which TRL refuses
        # only after the model has loaded.
        raise ConfigError(
            f"{gpus} GPUs are visible to a single training process. Train on all of them with one process per GPU: "
            f"accelerate launch --config_file conf/accelerate/ddp.yaml --num_processes {gpus} train.py ...; "
            "or on one GPU: CUDA_VISIBLE_DEVICES=0 python train.py ..."
        )
    if hw.local_world_size > gpus or hw.local_rank >= gpus:
        raise ConfigError(
            f"{hw.local_world_size} training processes on this machine but {gpus} visible GPU(s): each process needs "
            f"its own GPU. Launch with --num_processes {gpus} (accelerate) or --nproc_per_node {gpus} (torchrun), or "
            "make more GPUs visible with CUDA_VISIBLE_DEVICES"
        )


def check_fsdp_quantization(quant_cfg, model_dtype: str, fsdp: bool) -> None:
    """FSDP shards only floating-point tensors of one dtype per wrapped unit: 4-bit weights must be stored
    as the model's dtype (bnb_4bit_quant_storage), and 8-bit weights cannot be sharded at all."""
    if not fsdp or quant_cfg.mode == "none":
        return
    if quant_cfg.mode == "int8":
        raise ConfigError("FSDP cannot shard bitsandbytes 8-bit weights (int8 storage): use quant=nf4 with "
                          "quant.quant_storage=bfloat16, or DDP (conf/accelerate/ddp.yaml) if the model fits one GPU")
    if quant_cfg.quant_storage is not None and quant_cfg.quant_storage != model_dtype:
        raise ConfigError(
            f"FSDP with quant.mode={quant_cfg.mode}: quant.quant_storage={quant_cfg.quant_storage} must equal the "
            f"model's dtype ({model_dtype}) so that FSDP can flatten 4-bit and regular weights together; "
            f"set quant.quant_storage={model_dtype} (or leave it null: medchat then sets it under FSDP)"
        )


def check_quantization(quant_cfg, hw: Hardware) -> None:
    """bitsandbytes is installed and runs here, and the compute dtype is one this GPU has."""
    if quant_cfg.mode == "none":
        return
    if not hw.bitsandbytes:
        raise ConfigError(f"quant.mode={quant_cfg.mode} needs bitsandbytes, which is not installed; use quant=none")
    if hw.mps and not hw.cuda:
        raise ConfigError(f"quant.mode={quant_cfg.mode}: bitsandbytes does not run on Apple MPS; use quant=none")
    if quant_cfg.compute_dtype == "bfloat16" and hw.cuda and not hw.bf16:
        raise ConfigError("quant.compute_dtype=bfloat16: this GPU has no bf16 support; use auto or float16")


def oom_advice(cfg, every_layer_checkpointed: bool) -> str:
    t = cfg.trainer
    tips = [f"lower trainer.per_device_train_batch_size (now {t.per_device_train_batch_size}) and raise "
            f"trainer.gradient_accumulation_steps (now {t.gradient_accumulation_steps}) to keep the batch",
            f"lower trainer.max_length (now {t.max_length})"]
    if not every_layer_checkpointed:
        tips.insert(0, "set trainer.gradient_checkpointing=true (checkpoint every layer), or lower "
                       "trainer.memory_budget_gib so that auto checkpoints more layers")
    return "the training step ran out of GPU memory. To fit it: " + "; ".join(tips)
