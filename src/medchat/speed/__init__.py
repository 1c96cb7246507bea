"""Training and generation speed levers that sit on top of the builders (issue 13), one module each:

- fused_lora.py   one autograd function per LoRA projection (fewer kernels; dropout without activation memory)
- compile.py      regional torch.compile of the decoder layers
- microbatch.py   the largest micro-batch that fits the memory budget at the configured optimizer-step batch
- apply.py        the trainer.* switches -> the levers above, applied to a built trainer
"""
