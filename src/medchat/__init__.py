"""medchat: Hydra-composed QLoRA fine-tuning of chat LLMs on medical conversations."""

__version__ = "0.1.0"
