"""Training and evaluation: the Accelerate loop, the HF Trainer integration and model comparisons."""

from .loop import TrainingResult, TrainingSettings, latest_checkpoint, parameter_groups, train

__all__ = ["TrainingResult", "TrainingSettings", "latest_checkpoint", "parameter_groups", "train"]
