"""`a2gen train` checks its data before anything is fitted, as `a2gen compare` does: a training split without any
ranked action and a wide start without validation are refused; an action never in training is warned about."""

import shutil

from datasets import load_from_disk

from a2gen_hf.cli import main
from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer

TINY = ["--hidden-size", "8", "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress", "--cpu"]


def _copy(source, target, train=None, validation=None):
    """A copy of the data folder ``source`` with its train / validation splits changed by the given functions."""
    shutil.copytree(source, target)
    for split, change in (("train", train), ("validation", validation)):
        if change is not None:
            changed = change(load_from_disk(str(source / split)))
            shutil.rmtree(target / split)
            changed.save_to_disk(str(target / split))
    return target


def _without(names, tokenizer):
    """A map that drops the actions ``names`` from every target (the history is left as it is)."""
    ids = set(tokenizer.convert_tokens_to_ids(list(names)))

    def drop(row):
        kept = [index for index, action in enumerate(row["action_ids"]) if action not in ids]
        return {"action_ids": [row["action_ids"][i] for i in kept],
                "action_seconds": [row["action_seconds"][i] for i in kept]}  # fmt: skip

    return lambda split: split.map(drop, keep_in_memory=True)  # no cache file beside the shared folder's


def test_train_refuses_a_log_without_any_ranked_action_in_training(simulated_data_dir, tmp_path, capsys):
    tokenizer = A2GenActionTokenizer.from_pretrained(str(simulated_data_dir / "tokenizer"))
    ranked = [name for name in tokenizer.action_names if name not in (tokenizer.start_action, tokenizer.end_action)]
    data = _copy(simulated_data_dir, tmp_path / "clicks", train=_without(ranked, tokenizer))
    code = main(["train", "--recipe", "sparse_logs", "--data", str(data), "--output", str(tmp_path / "run"),
                 "--max-steps", "2", *TINY])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "none of the ranked actions" in err and "happens in the training split" in err
    assert not (tmp_path / "run" / "model").exists()


def test_train_warns_of_an_action_never_in_training(simulated_data_dir, tmp_path, capsys):
    tokenizer = A2GenActionTokenizer.from_pretrained(str(simulated_data_dir / "tokenizer"))
    ranked = [name for name in tokenizer.action_names if name not in (tokenizer.start_action, tokenizer.end_action)]
    data = _copy(simulated_data_dir, tmp_path / "nofirst", train=_without(ranked[:1], tokenizer))
    code = main(["train", "--recipe", "sparse_logs", "--data", str(data), "--output", str(tmp_path / "run"),
                 "--max-steps", "2", *TINY])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and f"{ranked[0]} never happen in the training split" in err


def test_train_with_the_wide_start_refuses_an_empty_validation_split(tmp_path, capsys):
    from test_compare import prepared_taobao_log

    data = prepared_taobao_log(tmp_path, ["pv", "fav", "buy"], 30, 2, "--validation-fraction", "0")
    argv = ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--max-steps", "2", *TINY]
    code = main([*argv, "--recipe", "sparse_logs"])
    err = capsys.readouterr().err
    assert code == 2 and "the validation split is empty, but the wide start" in err and "--no-wide-warm-start" in err
    assert not (tmp_path / "run" / "model").exists()


def test_only_the_main_process_prints_the_packages_messages(caplog):
    """With several processes each fits the same start and would print each line once per process."""
    import logging
    from types import SimpleNamespace

    from a2gen_hf.training.loop import _messages_of_the_main_process

    logger = logging.getLogger("a2gen_hf.training.simple_baselines")
    with caplog.at_level(logging.INFO):
        for main_process in (True, False):
            with _messages_of_the_main_process(SimpleNamespace(is_main_process=main_process)):
                logger.info(f"wide start (main {main_process})")
                logger.warning(f"a note (main {main_process})")
                logger.error(f"an error (main {main_process})")
        logger.info("after the run")
    assert [record.getMessage() for record in caplog.records] == [
        "wide start (main True)", "a note (main True)", "an error (main True)", "an error (main False)",
        "after the run",
    ]


def test_evaluate_names_data_whose_times_are_on_another_scale_than_the_models():
    """A log prepared with the wrong --time-unit (seconds read as milliseconds: the probe's model 3.04, data 1.16)
    gave timing errors 1000 times too small without a word."""
    from types import SimpleNamespace

    from a2gen_hf.cli import time_scale_note

    model = SimpleNamespace(time_log_mean=3.04)
    note = time_scale_note(SimpleNamespace(time_log_mean=1.16), model, "data/x")
    assert note.startswith("data/x: its event times are on another scale than the model's (mean log1p seconds 1.16 "
                           "against 3.04 in training, typical times 0.153 times shorter)")
    assert "a2gen prepare --time-unit" in note
    assert time_scale_note(SimpleNamespace(time_log_mean=3.5), model, "data/x") is None  # another log, close enough


def test_negative_epochs_are_refused_beside_max_steps(tmp_path):
    """From a probe: `--epochs -3 --max-steps 1` was accepted (the steps decided alone); 0 beside max_steps is
    transformers' "the steps decide" and stays."""
    import pytest

    from a2gen_hf.training.settings import TrainingSettings

    with pytest.raises(ValueError, match=r"num_epochs=-3 must be >= 0"):
        TrainingSettings(output_dir=str(tmp_path), num_epochs=-3, max_steps=1)
    assert TrainingSettings(output_dir=str(tmp_path), num_epochs=0, max_steps=1).max_steps == 1
