"""Training and evaluation: the Accelerate loop, the HF Trainer integration and model comparisons."""

from .data_setup import (
    MODEL_CHOICES,
    create_model,
    fit_rare_id_buckets,
    fit_target_popularity,
    load_data_dir,
    model_config_from_tokenizer,
)
from .loop import (
    TrainingResult,
    TrainingSettings,
    embedding_and_dense_groups,
    latest_checkpoint,
    make_accelerator,
    parameter_groups,
    train,
    train_from_data_dir,
)
from .trainer import A2GenTrainer, a2gen_compute_metrics, a2gen_training_arguments

__all__ = [
    "MODEL_CHOICES",
    "A2GenTrainer",
    "TrainingResult",
    "TrainingSettings",
    "a2gen_compute_metrics",
    "a2gen_training_arguments",
    "create_model",
    "embedding_and_dense_groups",
    "fit_rare_id_buckets",
    "fit_target_popularity",
    "latest_checkpoint",
    "load_data_dir",
    "make_accelerator",
    "model_config_from_tokenizer",
    "parameter_groups",
    "train",
    "train_from_data_dir",
]
