"""Sharing A2Gen checkpoints on the Hugging Face Hub: a model card that says what the model is, and one-commit pushes.

A pushed repo holds ``config.json`` (with an ``auto_map``), ``model.safetensors``, the tokenizer files, ``README.md``
and the modeling / tokenizer source files, so it loads with plain ``transformers`` and ``trust_remote_code=True``
even where ``a2gen_hf`` is not installed; MMoE and PLE checkpoints too (``AutoModel``).

Every entry point writes the same card (:func:`build_model_card`): ``a2gen push`` and :func:`push_checkpoint`,
``model.push_to_hub(...)`` (:func:`push_model_to_hub`, hooked into the models when ``a2gen_hf`` is imported) and
``A2GenTrainer.push_to_hub(...)`` (its ``create_model_card``, with :func:`eval_results_from_log_history`).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import numbers
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, EvalResult, HfApi, ModelCard, ModelCardData, constants

from .checkpoints import load_model, saved_tokenizer_folder
from .configuration_a2gen import A2GenConfig
from .metrics.action_metrics import COUNT_KEYS, DETAIL_KEYS
from .modeling_a2gen import A2GenPreTrainedModel
from .output_folders import remove_dead_work_folders
from .strict_loading import non_finite_tensors, shown_keys
from .tokenization_a2gen import A2GenActionTokenizer
from .version import __version__

logger = logging.getLogger(__name__)

TAGS = ["recommendation", "a2gen", "action-generation"]
DEFAULT_COMMIT_MESSAGE = "Upload A2Gen checkpoint"
# The folder a push writes the files to upload in, under the system's temporary folder: ``a2gen-push-<pid>_*``, so
# that the next push removes those of pushes killed by a signal (a model-sized copy each).
PUSH_FOLDER_PREFIX = "a2gen-push-"
# The weight files of a checkpoint (one file, or an index and its shards): those of an earlier push that a push does
# not write are deleted in its commit, so that a repo never holds two sets (a loader would read the old single file).
WEIGHT_FILE_PATTERNS = ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors")
EVAL_TASK = "action-generation"
METRIC_NAMES = {"auc": "AUC", "mae": "Time MAE"}
# The last line of every card this package writes: the sha256 of the text above it. A re-push replaces the card only
# where it still reads as written (its numbers then follow the new checkpoint); a card a person edited or wrote is
# kept unless the push is told to replace it, as transformers' push_to_hub keeps an existing card.
_CARD_MARK = "<!-- a2gen_hf model card; sha256 of the text above: {digest} -->"
_CARD_MARK_PATTERN = re.compile(r"<!-- a2gen_hf model card; sha256 of the text above: ([0-9a-f]{64}) -->\r?\n?\Z")
# The description transformers gives the template card it writes where a repo has none (``tokenizer.push_to_hub``,
# ``config.push_to_hub``, ``save_pretrained(push_to_hub=True)`` of any model: transformers.utils.hub's
# ``create_and_tag_model_card``, huggingface_hub's default template). A card whose text is that template, untouched,
# was written by no one and is replaced by the A2Gen card (before: kept as if written by hand, and the repo got no
# A2Gen card); a template a person filled in even one line of, and the Trainer's generated cards, are kept.
TRANSFORMERS_TEMPLATE_DESCRIPTION = (
    "This is the model card of a 🤗 transformers model that has been pushed on the Hub. This model card has been "
    "automatically generated."
)

# The per-action tables of a metrics file (compute_action_metrics) that go on the model card.
CARD_METRIC_TABLES = ("auc", "mae")
# Entries that only a whole metrics result (compute_action_metrics, eval_results.json) holds: its counts, details and
# notes, which never go on a card. eval_results holding one are cut to CARD_METRIC_TABLES (_card_eval_results).
METRICS_RESULT_KEYS = frozenset({*COUNT_KEYS, *DETAIL_KEYS, "notes"})
# Builder names that datasets gives data made in memory or read from plain files: not the name of a data set.
GENERIC_DATASET_NAMES = {"generator", "arrow", "parquet", "json", "csv", "text", "pandas", "dict", "list"}


class HubPushError(ValueError):
    """Raised when a checkpoint cannot be pushed as given (missing files, model and tokenizer that disagree)."""


# Metrics that are fractions: a value outside [0, 1] on a model card is a mistake (a percentage, another metric).
_UNIT_INTERVAL_METRICS = frozenset({"auc", "mean_auc", "gauc", "next_action_accuracy", "accuracy"})


def _eval_result_list(
    eval_results: Mapping[str, Mapping[str, float] | float], config: A2GenConfig, dataset_name: str | None,
    eval_split: str,
) -> list[EvalResult]:
    """``{"auc": {"like": 0.71, ...}, "mae": {...}, "loss": 0.3}`` -> one :class:`EvalResult` per number."""
    if dataset_name is None:
        raise ValueError("eval_results were given without dataset_name; name the data set they were measured on.")
    results = []
    for metric, values in eval_results.items():
        per_action = values.items() if isinstance(values, Mapping) else [(None, values)]
        for action, value in per_action:
            if action is not None and action not in config.action_names:
                raise ValueError(
                    f"eval_results[{metric!r}] names action {action!r}, which this model does not have; "
                    f"allowed actions: {config.action_names}."
                )
            where = f"eval_results[{metric!r}]" + (f"[{action!r}]" if action is not None else "")
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{where} = {value!r} is not a finite number.")
            if metric in _UNIT_INTERVAL_METRICS and not 0.0 <= value <= 1.0:
                raise ValueError(f"{where} = {value!r}: {metric} lies in [0, 1]; a percentage? give it as a fraction.")
            label = METRIC_NAMES.get(metric, metric)
            results.append(
                EvalResult(
                    task_type=EVAL_TASK,
                    task_name="Action generation",
                    dataset_type=dataset_name,
                    dataset_name=dataset_name,
                    dataset_split=eval_split,
                    metric_type=metric,
                    metric_name=label if action is None else f"{label} ({action})",
                    metric_value=float(value),
                )
            )
    return results


def _is_undefined(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def eval_results_from_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """
    The model-card ``eval_results`` of a metrics file: the ``eval_results.json`` of ``a2gen train`` or the
    ``a2gen evaluate --json`` file (both the whole :func:`~a2gen_hf.metrics.compute_action_metrics` output), or a
    hand-written ``{"auc": {"like": 0.71}, "mae": {"like": 0.52}}``.

    Only the per-action ``auc`` and ``mae`` tables are kept. Their undefined entries (``null`` or ``NaN``, e.g. the
    AUC of an action that never happens in the split) are left out, each with a note that quotes the file's own
    note on it when it has one; one more note lists the file's other entries, which the card does not show.

    Returns:
        ``(eval_results, notes)``: ``{"auc": {action: value}, "mae": {action: value}}`` for
        :func:`build_model_card` / :func:`push_checkpoint` (empty tables left out), and the notes to show.

    Raises:
        ValueError: ``metrics`` is not a JSON object, or has neither an ``auc`` nor an ``mae`` entry.
    """
    if not isinstance(metrics, Mapping):
        raise ValueError(
            f"The metrics must be a JSON object such as {{\"auc\": {{\"like\": 0.71}}}}, not {type(metrics).__name__}."
        )
    tables = [name for name in CARD_METRIC_TABLES if name in metrics]
    if not tables:
        raise ValueError(
            f"The metrics have no {' or '.join(CARD_METRIC_TABLES)} entry (their keys: {sorted(metrics)}); give the "
            "eval_results.json of `a2gen train`, the file of `a2gen evaluate --json`, or "
            '{"auc": {"like": 0.71}, "mae": {"like": 0.52}}.'
        )
    file_notes = [note for note in metrics.get("notes") or [] if isinstance(note, str)]
    eval_results: dict[str, Any] = {}
    notes = []
    for metric in tables:
        values = metrics[metric]
        entries = values.items() if isinstance(values, Mapping) else [(None, values)]
        kept = {}
        for action, value in entries:
            where = metric if action is None else f"{metric}[{action}]"
            if _is_undefined(value):
                reason = next((note for note in file_notes if note.startswith(f"{where}:")), None)
                notes.append(
                    f"{where} is undefined ({'null' if value is None else 'NaN'}) and is left off the model card"
                    + (f" ({reason.rstrip('.')})" if reason else "")
                    + "."
                )
            else:
                kept[action] = value
        if kept:
            eval_results[metric] = kept.pop(None) if None in kept else kept
    others = sorted(set(metrics) - set(tables))
    if others:
        notes.append(
            f"Only the per-action {' and '.join(CARD_METRIC_TABLES)} tables go on the model card; not shown: "
            f"{', '.join(others)}."
        )
    return eval_results, notes


def _results_table(results: list[EvalResult]) -> str:
    rows = "\n".join(f"| {result.metric_name} | {result.metric_value:.4f} |" for result in results)
    return f"| metric | value |\n| --- | --- |\n{rows}"


def build_model_card(
    model: A2GenPreTrainedModel,
    tokenizer: A2GenActionTokenizer | None = None,
    eval_results: Mapping[str, Mapping[str, float] | float] | None = None,
    dataset_name: str | None = None,
    *,
    repo_id: str | None = None,
    eval_split: str = "test",
    license: str = "apache-2.0",
    tags: list[str] | None = None,
) -> ModelCard:
    """
    The model card (``README.md``) of an A2Gen checkpoint: Hub metadata plus what the model does and how to load it.

    Args:
        model: the model to describe (its ``config`` gives the action vocabulary, generator and widths).
        tokenizer: its tokenizer; the card then reports the fitted time statistics.
        eval_results: ``{metric: {action: value}}`` (e.g. ``{"auc": {"like": 0.71}, "mae": {"like": 0.52}}``) or
            ``{metric: value}``; written as the ``model-index`` and as a table. Needs ``dataset_name``.
        dataset_name: the data set the model was trained and evaluated on (goes to ``datasets`` metadata).
        repo_id: the repo the card will live in, used in the loading snippet and as the model-index name.
        eval_split: the split ``eval_results`` were measured on.
        license: the card's license identifier.
        tags: more Hub tags (e.g. a model's ``model_tags``), after the A2Gen ones.

    A multi-task baseline (MMoE / PLE) gets the same card, saying what it is and loading it with ``AutoModel``.
    """
    if (problem := license_problem(license)) is not None:
        raise ValueError(f"build_model_card: {problem}.")
    config: A2GenConfig = model.config
    generates = model.can_generate()
    eval_results = _card_eval_results(eval_results)
    architecture = config.generator_type if generates else type(model).__name__.split("For")[0].lower()
    model_name = repo_id.split("/")[-1] if repo_id else f"a2gen-{architecture}"
    results = _eval_result_list(eval_results, config, dataset_name, eval_split) if eval_results else None
    card_tags = list(dict.fromkeys([*TAGS, architecture, "custom_code", *(tags or [])]))
    card_data = ModelCardData(
        library_name="transformers",
        license=license,
        tags=card_tags,
        datasets=[dataset_name] if dataset_name else None,
        model_name=model_name,
        eval_results=results,
        a2gen={
            "generator" if generates else "architecture": architecture,
            "action_names": list(config.action_names),
            "start_action": config.start_action,
            "end_action": config.end_action,
            "max_actions": config.max_actions,
            "a2gen_hf_version": __version__,
        },
    )
    load_id = repo_id or "<this repo>"
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    time_statistics = _time_statistics_text(tokenizer)
    training_data = (
        f"Trained and evaluated on `{dataset_name}`." if dataset_name else "The training data set is not recorded."
    )
    evaluation = (
        f"Measured on the `{eval_split}` split of `{dataset_name}`. AUC ranks examples where an action happens above "
        "those where it does not; Time MAE is the mean absolute error of the predicted time of an action, in "
        f"normalised time units, on examples where the action happens.\n\n{_results_table(results)}"
        if results
        else "No evaluation results were given for this checkpoint."
    )
    if generates:
        summary = f"""An **A2Gen** (Action-Aware Generative Sequence Network, arXiv 2604.25834) model built with `a2gen_hf`
{__version__}. For a (user, candidate item) pair it generates the time-ordered sequence of actions the user will
take on the item, each with its time (for example `start` at 0 s, `like` at 2 s, `leave` at 18 s), reading the
user's history the same way: every history item carries its own timed action sequence."""
        architecture_row = (
            f"| generator | `{config.generator_type}` "
            f"({'implicit' if config.generator_type == 'iag' else 'explicit'} autoregression) |"
        )
        remote_load = f"""from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{load_id}", trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained("{load_id}", trust_remote_code=True)  # encoder + action generator
encoder = AutoModel.from_pretrained("{load_id}", trust_remote_code=True)  # A2GenModel: the history encoder only"""
    else:
        summary = f"""A **{type(model).__name__.split("For")[0]}** multi-task baseline of the A2Gen paper (arXiv 2604.25834), built
with `a2gen_hf` {__version__} on A2Gen's inputs. For a (user, candidate item) pair it predicts, per action, whether
the user takes it on the item and when it first happens; it does not generate sequences."""
        architecture_row = f"| architecture | `{type(model).__name__}` (multi-task baseline, no generation) |"
        remote_load = f"""from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{load_id}", trust_remote_code=True)
model = AutoModel.from_pretrained("{load_id}", trust_remote_code=True)  # {type(model).__name__}"""
    width_row = (
        f"| width / heads | {config.hidden_size} / {config.num_attention_heads} |"
        if isinstance(config, A2GenConfig)
        else f"| expert / tower widths | {config.expert_hidden_sizes} / {config.tower_hidden_sizes} |"
    )
    body = f"""
# {model_name}

{summary}

## Model details

| | |
| --- | --- |
{architecture_row}
| actions | {", ".join(f"`{name}`" for name in config.action_names)} (`{config.start_action}` opens, `{config.end_action}` closes a sequence) |
{width_row}
| history items read | {config.max_history_items} (most recent), up to {config.max_events_per_item} events each |
| actions {"generated" if generates else "predicted"} | up to {config.max_actions} after `{config.start_action}` |
| parameters | {num_parameters:,} |
| time encoding | {time_statistics} |
{_input_rows(config)}
## Intended use

Ranking candidate items by the probability of each action (multi-task recommendation) and predicting when the
actions happen, for research on generative action modelling and as a reference implementation. Inputs are
{_inputs_text(config)}, prepared with the tokenizer of this repo.

## How to use

With `a2gen_hf` installed:

```python
from a2gen_hf import A2GenActionTokenizer, AutoModelForActionGeneration

model = AutoModelForActionGeneration.from_pretrained("{load_id}")
tokenizer = A2GenActionTokenizer.from_pretrained("{load_id}")
```

With `transformers` only (the repo carries its code):

```python
{remote_load}
```

Offline, after one download: set `HF_HUB_OFFLINE=1` and load the same repo id from the cache.

## Training data

{training_data}

## Evaluation

{evaluation}

## Limitations

- The action vocabulary is fixed by this checkpoint; other actions cannot be predicted without retraining.
- {_id_limitation(config)}
- Results hold for data like the training data. Checkpoints trained on simulated data or on sample logs show that
  the pipeline works; they are not models of real users.
- Times are predicted on the tokenizer's normalised scale; converting back to seconds assumes the fitted statistics
  still describe the traffic.

## Citation

Li, Lin, Guo, Zhou, Liu et al., "Action-Aware Generative Sequence Modeling for Short Video Recommendation",
arXiv 2604.25834, 2026.
"""
    return _marked(ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}"))


def _time_statistics_text(tokenizer: A2GenActionTokenizer | None) -> str:
    """The card's time-encoding row: the tokenizer's fitted statistics, or, where it holds the defaults (mean 0, std
    1: :meth:`~A2GenActionTokenizer.fit_time_statistics` never ran), that they are the defaults (before: "fitted on
    the training split" whatever the tokenizer held)."""
    if tokenizer is None:
        return "not recorded here (no tokenizer was pushed with this checkpoint)"
    mean, std = tokenizer.time_log_mean, tokenizer.time_log_std
    defaults = inspect.signature(A2GenActionTokenizer.__init__).parameters  # a tokenizer never fitted holds these
    if (mean, std) == (defaults["time_log_mean"].default, defaults["time_log_std"].default):
        return (f"`log1p(seconds)` with the default statistics (mean {mean:.4f}, std {std:.4f}: not fitted to any "
                "data, so times are not standardised)")  # fmt: skip
    return (f"`log1p(seconds)` standardised with mean {mean:.4f} and std {std:.4f} (fitted on the training split, "
            "saved with the tokenizer)")  # fmt: skip


def _input_rows(config) -> str:
    """The card's table rows for the input options a checkpoint was built with (none for the paper's inputs)."""
    rows = []
    if not getattr(config, "use_id_embeddings", True):
        rows.append("| user / item ids | not read (id-free): the model reads the items' side features and the history |")
    if getattr(config, "history_count_features", False):
        rows.append("| count features | the history's per-action shares, recency and category overlap |")
    if getattr(config, "history_time_features", False):
        rows.append("| history times | when each history session happened (`history_item_ages`): every request needs "
                    "its time and each history item's session start, in Unix seconds |")  # fmt: skip
    if getattr(config, "target_popularity_features", False):
        rows.append("| popularity features | the target item's and its category's training rates |")
    if getattr(config, "wide_path", False):
        rows.append("| wide path | a linear logit per action over the count and popularity features |")
    return "".join(f"{row}\n" for row in rows)


def _inputs_text(config) -> str:
    """What a request to this checkpoint holds, in words."""
    ids = ("hashed item side features (no user or item ids)" if not getattr(config, "use_id_embeddings", True)
           else "hashed user / item ids")  # fmt: skip
    times = (" with each history session's start and the request's time (Unix seconds: `encode_histories(..., now=...)`"
             ", or the pipeline's `time` and `session_start`)" if getattr(config, "history_time_features", False)
             else "")  # fmt: skip
    return f"{ids} and the user's history of timed actions{times}"


def _id_limitation(config) -> str:
    """The card's limitation about ids: hashed ids for a model that embeds them, none read for an id-free one."""
    if not getattr(config, "use_id_embeddings", True):
        rates = ", and by their training rates" if getattr(config, "target_popularity_features", False) else ""
        return ("User and item ids are not read (id-free): items are told apart by their side features, which are "
                f"hashed into buckets (different raw values can share one){rates}.")  # fmt: skip
    return ("User, item and side-feature ids are hashed into buckets: different raw ids can share a bucket, and ids "
            "never seen\n  in training map to untrained embeddings, so cold-start users and items get little "
            "personalisation.")  # fmt: skip


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _marked(card: ModelCard) -> ModelCard:
    """``card`` with :data:`_CARD_MARK` as its last line (the digest of the text as ``card.save`` writes it)."""
    text = str(card)
    text = text if text.endswith("\n") else text + "\n"
    return ModelCard(text + _CARD_MARK.format(digest=_sha256(text)) + "\n")


def card_is_generated(text: str) -> bool:
    """Whether a ``README.md``'s ``text`` is a card of this package as written (marked, and not edited since)."""
    match = _CARD_MARK_PATTERN.search(text)  # line endings as written (an editor or a checkout may make them CRLF)
    return match is not None and _sha256(text[: match.start()].replace("\r\n", "\n")) == match.group(1)


def card_is_template(text: str) -> bool:
    """Whether a ``README.md``'s ``text`` is transformers' template card as it writes it, untouched: its text below the
    YAML header is huggingface_hub's default template filled with :data:`TRANSFORMERS_TEMPLATE_DESCRIPTION` and
    nothing else (line endings and trailing spaces aside). Any edit makes it a card a person wrote."""
    def body(card_text: str) -> list[str]:
        lines = [line.rstrip() for line in ModelCard(card_text.replace("\r\n", "\n")).text.strip().split("\n")]
        return lines

    template = ModelCard.from_template(ModelCardData(), model_description=TRANSFORMERS_TEMPLATE_DESCRIPTION)
    try:
        return body(text) == body(str(template))
    except Exception:  # a README that is no card (front matter that is no YAML mapping): not the template
        return False


def _card_in_repo(api: HfApi, repo_id: str, revision: str | None) -> str | None:
    """The ``README.md`` of ``repo_id`` at ``revision`` (the default branch when None), or None where it has none."""
    from huggingface_hub.utils import EntryNotFoundError, RevisionNotFoundError

    with tempfile.TemporaryDirectory(prefix="a2gen-card-") as cache:  # read, not kept in the user's Hub cache
        try:
            path = api.hf_hub_download(repo_id, "README.md", revision=revision, cache_dir=cache)
        except (EntryNotFoundError, RevisionNotFoundError):
            return None
        return Path(path).read_text(encoding="utf-8", errors="replace")


def _keeps_card(api: HfApi, repo_id: str, revision: str | None, replace_card: bool) -> bool:
    """Whether the push leaves the repo's ``README.md`` as it is: one that a person edited or wrote, unless
    ``replace_card``; the package's own unedited card and transformers' template card are replaced (with the new
    checkpoint's numbers)."""
    if replace_card:
        return False
    existing = _card_in_repo(api, repo_id, revision)
    if existing is None or card_is_generated(existing):
        return False
    if card_is_template(existing):
        logger.info("%s has transformers' template README.md (written by a tokenizer, config or save_pretrained push): "
                    "it is replaced by the A2Gen model card.", repo_id)  # fmt: skip
        return False
    logger.warning(
        "%s already has a README.md that was edited or written by hand: it is kept and the generated model card is "
        "not pushed. Pass replace_card=True (a2gen push --replace-card) to replace it.", repo_id,
    )
    return True


def _load_checkpoint(checkpoint_dir: Path) -> tuple[A2GenPreTrainedModel, A2GenActionTokenizer | None]:
    """The model saved in ``checkpoint_dir``, through the one strict loader :func:`~a2gen_hf.checkpoints.load_model`
    (what is pushed is exactly what was saved: no missing, unexpected or mistyped tensor, no NaN), and its tokenizer
    (in the folder itself or in ``tokenizer/``; None when there is none). The tokenizer's vocabulary is checked
    against the model's by :func:`push_checkpoint`."""
    try:
        model = load_model(checkpoint_dir)
        tokenizer_folder = saved_tokenizer_folder(checkpoint_dir)
        if tokenizer_folder is None:
            return model, None
        return model, A2GenActionTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:  # CheckpointError is a ValueError
        raise HubPushError(f"{checkpoint_dir} cannot be pushed: {error}") from None


def _missing_tokenizer_message(folder: Path, repo_id: str) -> str:
    """For a checkpoint folder without a tokenizer: the files it lacks and where ``a2gen`` writes them (a CLI user
    has no ``tokenizer=`` to pass; before: Python advice only)."""
    names = ("tokenizer_config.json", "vocab.json")
    missing = [name for name in names if not (folder / name).is_file()]
    subfolder = folder / "tokenizer"
    where = str(folder)
    if subfolder.is_dir():
        lacking = " and ".join(name for name in names if not (subfolder / name).is_file())
        where += f" (and its tokenizer/ subfolder lacks {lacking})"
    return (
        f"No tokenizer in {folder} to push with the model to {repo_id}: {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing from {where}. The tokenizer carries the time statistics "
        "and id hashing, and a model pushed without it does not load. The OUTPUT/model folder of a2gen train holds "
        "the tokenizer: push that folder, or copy tokenizer_config.json and vocab.json from the tokenizer/ folder of "
        f"the data the model was trained on (a2gen prepare's output) into {folder}."
    )


def _check_tokenizer_fits(model: A2GenPreTrainedModel, tokenizer: A2GenActionTokenizer) -> None:
    """The tokenizer means what the model was trained with: actions, time statistics, ``max_actions`` and bucket
    counts (:meth:`A2GenActionTokenizer.check_compatible`), checked before the repository is created."""
    try:
        tokenizer.check_compatible(model.config)
    except ValueError as error:
        raise HubPushError(f"{error}\nNothing was pushed: push the tokenizer the model was trained with.") from None


def repo_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is no Hub repository id, in plain terms, or None. The rule is huggingface_hub's own
    (``validate_repo_id``, which ``create_repo`` applies), checked before the model is loaded (before: after loading,
    huggingface_hub's "Repo id must be in the form ... Use `repo_type` argument if needed")."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return (
            f"{repo_id!r} is not a Hub repository id: give 'name' or 'namespace/name' (your user or organisation name, "
            "one '/', then the repository's name), each part of letters, digits, '-', '_' and '.' only (no spaces, "
            "no second '/', not starting or ending with '-' or '.', no '--' or '..', at most 96 characters; a URL or a "
            "'datasets/...' path is no repository id)"
        )
    return None


def license_problem(license: Any) -> str | None:
    """Why ``license`` is no Hub license id (one word such as ``"apache-2.0"``), in plain terms, or None: the one
    check of :func:`build_model_card` and :func:`push_checkpoint` (before: only the push checked it)."""
    if not isinstance(license, str) or not license.strip() or any(char.isspace() for char in license.strip()):
        return f"license={license!r} must be a Hub license id such as 'apache-2.0', 'cc-by-nc-4.0' or 'other'"
    return None


def _check_push_arguments(
    checkpoint_dir_or_model: Any, repo_id: Any, tokenizer: Any, eval_results: Any, license: Any = "apache-2.0",
    replace_card: Any = False,
) -> None:
    """The arguments' kinds, before anything is loaded or sent (before: AttributeErrors and TypeErrors from inside)."""
    problems = []
    if (problem := license_problem(license)) is not None:
        problems.append(problem)
    if not isinstance(repo_id, str) or not repo_id.strip():
        problems.append(f"repo_id={repo_id!r} must be a repository id, 'namespace/name' (or 'name')")
    elif (problem := repo_id_problem(repo_id)) is not None:
        problems.append(problem)
    if not isinstance(checkpoint_dir_or_model, (str, Path, A2GenPreTrainedModel)):
        problems.append(f"checkpoint_dir_or_model is a {type(checkpoint_dir_or_model).__name__}; give an A2Gen, MMoE "
                        "or PLE model, or the folder save_pretrained wrote")  # fmt: skip
    if tokenizer is not None and not isinstance(tokenizer, A2GenActionTokenizer):
        problems.append(f"tokenizer is a {type(tokenizer).__name__}; give the A2GenActionTokenizer the model was "
                        "trained with (A2GenActionTokenizer.from_pretrained(folder) reads a saved one)")  # fmt: skip
    if eval_results is not None and not isinstance(eval_results, Mapping):
        problems.append(f"eval_results is a {type(eval_results).__name__}; give a dict such as "
                        "{'auc': {'like': 0.71}} (eval_results_from_metrics reads a metrics file)")  # fmt: skip
    if not isinstance(replace_card, bool):
        problems.append(f"replace_card={replace_card!r} must be True or False")
    if problems:
        raise HubPushError("push_checkpoint: " + "; ".join(problems) + ".")


def push_checkpoint(
    checkpoint_dir_or_model: str | Path | A2GenPreTrainedModel,
    repo_id: str,
    tokenizer: A2GenActionTokenizer | None = None,
    eval_results: Mapping[str, Mapping[str, float] | float] | None = None,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    dataset_name: str | None = None,
    *,
    commit_description: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: list[str] | None = None,
    license: str = "apache-2.0",
    replace_card: bool = False,
    max_shard_size: int | str | None = None,
) -> CommitInfo:
    """
    Push an A2Gen model, its tokenizer, its source code and a model card to ``repo_id`` in one commit.

    Args:
        checkpoint_dir_or_model: a model, or a folder written by ``save_pretrained`` (its tokenizer is read from the
            folder itself or from ``tokenizer/`` when ``tokenizer`` is not given). Only the model and tokenizer files
            are pushed: optimizer states and other training files in the folder stay local.
        repo_id: ``namespace/name`` (or ``name``: the token owner's namespace); created if missing.
        tokenizer: the tokenizer to push with the model; its action vocabulary must be the model's.
        eval_results: evaluation numbers for the model card (see :func:`build_model_card`): ``{metric: {action:
            value}}`` / ``{metric: value}``, or a whole metrics result (``a2gen evaluate --json``'s, ``eval_results.json``),
            cut to its per-action AUC and MAE with a warning for each entry left out; needs ``dataset_name``.
        private: create the repo as private (ignored if it exists).
        token: a Hub write token; by default (None or True) the one of ``HF_TOKEN`` / ``hf auth login``; False sends
            none, as in transformers. It is sent in the ``Authorization`` header only: never written to a file or to
            the log.
        commit_message: the commit's title.
        dataset_name: the training data set, for the card.
        commit_description / revision / create_pr: as ``HfApi.upload_folder`` takes them.
        tags: more Hub tags for the card.
        license: the card's license identifier (a Hub license id such as ``"apache-2.0"``, ``"cc-by-nc-4.0"`` or
            ``"other"``): say the data's terms where they bind the model.
        replace_card: replace a ``README.md`` already in the repo that was edited or written by hand. By default
            such a card is kept (with a warning) and only the files of the checkpoint change; a card this package
            wrote and nobody edited, and transformers' template card (what ``tokenizer.push_to_hub`` and the like
            write), are always replaced, so the card follows the new checkpoint.
        max_shard_size: shard the pushed weights as ``save_pretrained(max_shard_size=...)`` does (an index and its
            shards); None: one ``model.safetensors``. Weight files of an earlier push that this one does not write
            (a single file after shards, or the other way round) are deleted in the same commit.

    Returns:
        The :class:`~huggingface_hub.CommitInfo` of the commit (``.oid`` is its commit id, ``.repo_url.repo_id``
        the full repo id); :func:`pushed_nothing` of it is True when no file differed from the repo's, so that no
        commit was made.
    """
    _check_push_arguments(checkpoint_dir_or_model, repo_id, tokenizer, eval_results, license, replace_card)
    if isinstance(checkpoint_dir_or_model, (str, Path)):
        model, saved_tokenizer = _load_checkpoint(Path(checkpoint_dir_or_model))
        tokenizer = tokenizer if tokenizer is not None else saved_tokenizer
    else:
        model = checkpoint_dir_or_model
    if tokenizer is None and isinstance(checkpoint_dir_or_model, (str, Path)):
        raise HubPushError(_missing_tokenizer_message(Path(checkpoint_dir_or_model), repo_id))
    if tokenizer is None:
        raise HubPushError(
            f"No tokenizer to push with the model to {repo_id}: the tokenizer carries the time statistics and id "
            "hashing, and a checkpoint without it does not load (load_checkpoint). Pass tokenizer=..., or save it "
            "into the folder (or its tokenizer/ subfolder) with tokenizer.save_pretrained(folder)."
        )
    _check_tokenizer_fits(model, tokenizer)
    non_finite = non_finite_tensors(model)
    if non_finite:
        raise HubPushError(f"The model holds NaN or inf weights ({shown_keys(non_finite)}); it is not pushed.")
    eval_results = _card_eval_results(eval_results)
    if eval_results:  # refuse bad numbers before the repo is created
        _eval_result_list(eval_results, model.config, dataset_name, "test")

    api = HfApi(token=token, library_name="a2gen_hf", library_version=__version__)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if revision is not None and not create_pr:  # a new branch is made from main, as transformers' push_to_hub does
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    card = build_model_card(
        model, tokenizer, eval_results=eval_results, dataset_name=dataset_name, repo_id=repo_id, tags=tags,
        license=license,
    )
    keep_card = _keeps_card(api, repo_id, revision, replace_card)
    head = None if create_pr else api.repo_info(repo_id, revision=revision).sha
    remove_dead_work_folders(tempfile.gettempdir(), PUSH_FOLDER_PREFIX)
    with tempfile.TemporaryDirectory(prefix=f"{PUSH_FOLDER_PREFIX}{os.getpid()}_") as staging:
        folder = Path(staging)
        shards = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
        model.save_pretrained(folder, **shards)  # its auto_map lists the encoder under AutoModel too
        if tokenizer is not None:
            # its auto_map and code go along however a2gen_hf was imported (a2gen_hf.register does this only when
            # transformers was imported first)
            A2GenActionTokenizer.register_for_auto_class()
            tokenizer.save_pretrained(folder)
        if not keep_card:
            card.save(folder / "README.md")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=commit_message, commit_description=commit_description,
            revision=revision, create_pr=create_pr, delete_patterns=list(WEIGHT_FILE_PATTERNS),
        )
    # huggingface_hub makes no commit (and no pull request) when no file differs from the repo's: it returns the
    # branch's head instead, which would read as a new commit
    commit.a2gen_pushed_nothing = not commit.pr_url if create_pr else commit.oid == head
    if commit.a2gen_pushed_nothing:
        logger.info("%s already holds these files (commit %s): no commit was made.", repo_id, commit.oid)
    return commit


def pushed_nothing(commit: CommitInfo) -> bool:
    """Whether :func:`push_checkpoint` (``push_to_hub``) made no commit because the repo already held every file it
    pushes; ``commit.oid`` is then the branch's existing head (and ``commit.pr_url`` None with ``create_pr``)."""
    return bool(getattr(commit, "a2gen_pushed_nothing", False))


# What trainer.evaluate() returns beside the metrics: its timing (eval_runtime, eval_samples_per_second,
# eval_steps_per_second) and where training stood (epoch, step).
_TRAINER_BOOKKEEPING = re.compile(r"^(?:eval_|test_)?(?:runtime|samples_per_second|steps_per_second)$|^(?:epoch|step)$")


def _is_trainer_bookkeeping(key: str) -> bool:
    return _TRAINER_BOOKKEEPING.match(key) is not None


def _card_eval_results(eval_results: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``eval_results`` for the card, the one home of the forms every entry point takes (:func:`build_model_card`,
    :func:`push_checkpoint`, ``model.push_to_hub``): a whole metrics result (``compute_action_metrics``, the
    ``eval_results.json`` of ``a2gen train``: it holds counts such as ``num_examples`` or ``notes``) is cut to its
    per-action AUC and MAE tables by :func:`eval_results_from_metrics`, each entry left out said at WARNING level
    (before: INFO, so dropped metrics went unnoticed); the short form ``{metric: {action: value}}`` /
    ``{metric: value}`` passes whole (``{"loss": 0.3}`` too; before, ``model.push_to_hub`` refused it and dropped it
    beside an AUC table, while ``push_checkpoint`` kept it)."""
    if not eval_results:
        return None
    if isinstance(eval_results, Mapping):  # trainer.evaluate()'s bookkeeping is no result of the model
        bookkeeping = [key for key in eval_results if _is_trainer_bookkeeping(str(key))]
        if bookkeeping:
            logger.warning("model card: %s left out: the Trainer's timing and position, not metrics of the model.",
                           ", ".join(map(str, bookkeeping)))  # fmt: skip
            eval_results = {key: value for key, value in eval_results.items() if key not in bookkeeping}
    if not isinstance(eval_results, Mapping) or not (METRICS_RESULT_KEYS & set(eval_results)):
        return eval_results or None  # checked entry by entry by _eval_result_list
    kept, notes = eval_results_from_metrics(eval_results)
    for note in notes:
        logger.warning("model card: %s", note)
    return kept or None


def push_model_to_hub(
    model: A2GenPreTrainedModel,
    repo_id: str,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = None,
    tags: list[str] | None = None,
    *,
    tokenizer: A2GenActionTokenizer | None = None,
    eval_results: Mapping[str, Any] | None = None,
    dataset_name: str | None = None,
    license: str = "apache-2.0",
    replace_card: bool = False,
) -> CommitInfo:
    """
    What ``model.push_to_hub(repo_id, ...)`` does for the models of this package (A2Gen, MMoE, PLE): transformers'
    arguments, plus ``tokenizer`` (pushed along), ``eval_results`` (a metrics result such as ``a2gen evaluate
    --json``'s or the short ``{"auc": {"like": 0.71}}``; its per-action AUC and MAE go on the card, counts never)
    and ``dataset_name`` (and ``license``, the card's); the repo gets the A2Gen model card and the code, in one commit
    (:func:`push_checkpoint`; a card already in the repo that a person edited or wrote is kept unless
    ``replace_card=True``). ``eval_results`` take the forms :func:`push_checkpoint` takes, with the same outcome.

    ``max_shard_size`` shards the pushed weights as ``save_pretrained`` does; ``token=False`` sends no token, as in
    transformers (before: the stored token was used).
    """
    return push_checkpoint(
        model, repo_id, tokenizer=tokenizer, eval_results=eval_results, private=bool(private),
        token=token, commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
        dataset_name=dataset_name, commit_description=commit_description, revision=revision, create_pr=create_pr,
        tags=tags, license=license, replace_card=replace_card, max_shard_size=max_shard_size,
    )


def eval_results_from_log_history(
    log_history: list[Mapping[str, Any]], config: A2GenConfig, step: int | None = None
) -> dict[str, Any]:
    """
    The card's ``{"auc": {action: value}, "mae": {action: value}}`` from a Trainer's ``state.log_history``: the last
    evaluation's ``eval_auc_<action>`` / ``eval_mae_<action>`` (what :func:`a2gen_compute_metrics` logs), or with
    ``step`` the last one logged at that step (the best checkpoint's, when the Trainer loaded it at the end);
    undefined (NaN) values and counts are left out. Empty when no such evaluation was logged.
    """
    entries = log_history if step is None else [entry for entry in log_history if entry.get("step") == step]
    for entry in reversed(entries):
        tables: dict[str, dict[str, float]] = {}
        for metric in CARD_METRIC_TABLES:
            for action in config.action_names:
                value = entry.get(f"eval_{metric}_{action}")
                if isinstance(value, (int, float)) and math.isfinite(value):
                    tables.setdefault(metric, {})[action] = float(value)
        if tables:
            return tables
    return {}


def dataset_name_of(dataset: Any) -> str | None:
    """The name of a ``datasets`` data set for a card: its ``info.dataset_name`` or builder name, unless it is a
    generic one (data made in memory or read from Arrow / Parquet files is "generator", "arrow", ...): then None."""
    info = getattr(dataset, "info", None)
    for name in (getattr(info, "dataset_name", None), getattr(info, "builder_name", None)):
        if isinstance(name, str) and name and name.lower() not in GENERIC_DATASET_NAMES:
            return name
    return None


def _network_errors() -> tuple[type[BaseException], ...]:
    """OSError (connection refused, offline mode, HTTP errors of huggingface_hub) and the HTTP client's own."""
    errors: list[type[BaseException]] = [OSError]
    # huggingface_hub's HTTP client: httpx2 or httpx, depending on the release.
    try:
        import httpx2

        errors.append(httpx2.HTTPError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


# What a push raises when the Hub cannot be reached or refuses it: `a2gen push` turns it into one line, exit 2.
HUB_ERRORS = _network_errors()


def hub_error_message(error: BaseException) -> str:
    """
    One line that says what went wrong talking to the Hub and what to do: offline mode, an unreachable endpoint, a
    refused token (401 / 403), a missing repo (404), or the server's own first line.
    """
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    endpoint = constants.ENDPOINT
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: pushing needs the network. Unset HF_HUB_OFFLINE (or set it to 0) and retry."
    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if status == 401:
            return (
                f"the Hub at {endpoint} refused the token (401 Unauthorized): log in with `hf auth login` or set "
                "HF_TOKEN to a token with write access."
            )
        if status == 403:
            return f"the token may not write to this repo (403 Forbidden at {endpoint}): use a token with write access."
        return f"the Hub at {endpoint} answered {status or 'an error'}: {first_line}"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"cannot reach the Hub at {endpoint} ({reason}): check the network, or HF_ENDPOINT if you set it."


# model.push_to_hub of the A2Gen, MMoE and PLE models writes the A2Gen model card (see A2GenPreTrainedModel).
A2GenPreTrainedModel.hub_pusher = staticmethod(push_model_to_hub)
A2GenPreTrainedModel.hub_push_checker = staticmethod(_check_push_arguments)
