"""
Evaluation of A2Gen and its baselines (paper section 7) and the ranking metrics recommender users report, as plain
functions and as offline ``evaluate`` modules. This package only hands names on:

- :mod:`.action_metrics`: the metric math, arrays in, numbers out (AUC, timing MAE, next-action accuracy, time
  order, the simulator's oracle, GAUC, LogLoss, calibration, NDCG@K / Recall@K), :func:`compute_action_metrics`
  (all of them; its docstring gives the result format) and :func:`flatten_metrics` (the scalar view);
- :mod:`.evaluation`: the one prediction loop (:func:`predict_batch`, :func:`predict_dataloader`) and
  :func:`evaluate_model`;
- :mod:`.tables`: plain-text tables of results;
- :mod:`.modules`: the shipped ``evaluate`` modules (``action_auc``, ``timing_mae``, ``next_action_accuracy``,
  ``time_order``, ``oracle_comparison``, ``gauc``, ``log_loss``, ``calibration``, ``ranking_at_k``), each in its
  folder beside this file and wrapping the same functions; :func:`load_metric` loads them by path, offline.

Imports run one way: ``action_metrics`` <- ``evaluation`` / ``tables``; none of them imports a model module.
"""

from .action_metrics import (
    COUNT_KEYS,
    DEFAULT_CALIBRATION_BINS,
    DEFAULT_TOP_K,
    DETAIL_KEYS,
    MIN_GAUC_GROUPS,
    ORACLE_COLUMNS,
    action_auc,
    action_targets,
    backward_time_rate,
    calibration,
    compute_action_metrics,
    flatten_metrics,
    gauc,
    group_aucs,
    log_loss,
    next_action_accuracy,
    oracle_comparison,
    predicted_next_actions,
    ranked_action_aucs,
    ranked_action_ids,
    ranking_at_k,
    reliability_table,
    timing_mae,
)
from .evaluation import evaluate_model, predict_batch, predict_dataloader, user_groups
from .modules import METRIC_NAMES, METRICS_DIR, load_metric, metric_path
from .tables import format_metrics_table, format_ranking_table, gauc_cell

__all__ = [
    "COUNT_KEYS",
    "DETAIL_KEYS",
    "DEFAULT_CALIBRATION_BINS",
    "DEFAULT_TOP_K",
    "METRICS_DIR",
    "METRIC_NAMES",
    "MIN_GAUC_GROUPS",
    "ORACLE_COLUMNS",
    "action_auc",
    "action_targets",
    "backward_time_rate",
    "calibration",
    "compute_action_metrics",
    "evaluate_model",
    "flatten_metrics",
    "format_metrics_table",
    "format_ranking_table",
    "gauc",
    "gauc_cell",
    "group_aucs",
    "load_metric",
    "log_loss",
    "metric_path",
    "next_action_accuracy",
    "oracle_comparison",
    "predict_batch",
    "predict_dataloader",
    "user_groups",
    "predicted_next_actions",
    "ranked_action_aucs",
    "ranked_action_ids",
    "ranking_at_k",
    "reliability_table",
    "timing_mae",
]
