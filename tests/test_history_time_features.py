"""When the history sessions happened: prepare's ``history_session_starts``, the collator's ``history_item_ages``, the
time features of the count features (``history_time_features``) and of the regression (``time_features``), and the
wide start that maps one onto the other."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from datasets import Dataset, DatasetDict

from a2gen_hf import A2GenConfig
from a2gen_hf.data import A2GenDataCollator, convert_log
from a2gen_hf.data.examples import EXAMPLE_SCHEMA
from a2gen_hf.features_a2gen import HISTORY_DECAY_SCALES, NO_RECENT_SESSION_SECONDS, history_time_feature_size
from a2gen_hf.modeling_a2gen import check_model_inputs
from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer
from a2gen_hf.training.compare import ABLATIONS
from a2gen_hf.training.data_setup import create_model, load_data_dir
from a2gen_hf.training.simple_baselines import (
    CountFeatureLogisticRegression,
    HistoryCounts,
    TimedLogisticRegression,
    start_from_regression,
    warm_start_wide_path,
)

ACTIONS = ["start", "like", "follow", "leave"]
START, LIKE, FOLLOW, LEAVE = 1, 2, 3, 4
NOW = 2_000_000_000
SPARSE = dict(
    hidden_size=16, id_embedding_size=16, history_count_features=True, history_time_features=True,
    target_popularity_features=True, occurrence_head=True, wide_path=True, occurrence_paths_input="extra_only",
    use_id_embeddings=False, max_history_items=8, max_events_per_item=4,
)


@pytest.fixture
def tokenizer():
    return A2GenActionTokenizer(action_names=ACTIONS, start_action="start", end_action="leave", item_buckets=4096,
                                user_buckets=512)  # fmt: skip


def _row(user: int, item: int, history_ages, liked: bool, category: int = 3) -> dict:
    """A row whose history items started `history_ages` seconds (oldest first) before its own session."""
    history_ages = list(history_ages)
    return {
        "user": f"u{user}", "item": f"i{item}", "user_id": 1 + user % 500, "item_id": 1 + item % 4000,
        "item_side_ids": [category],
        "history_item_ids": [1 + (item + k + 1) % 4000 for k in range(len(history_ages))],
        "history_item_side_ids": [[category]] * len(history_ages),
        "history_action_ids": [[START, LEAVE]] * len(history_ages),
        "history_action_seconds": [[0.0, 5.0]] * len(history_ages),
        "action_ids": [START, LIKE, LEAVE] if liked else [START, LEAVE],
        "action_seconds": [0.0, 3.0, 9.0] if liked else [0.0, 9.0],
        "session_start": NOW,
        "history_session_starts": [NOW - age for age in history_ages],
    }


def _recency_rows(count: int, seed: int) -> list[dict]:
    """Rows whose like happens when the user's last session was within the hour: only the times tell."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        recent = bool(rng.random() < 0.5)
        last = int(rng.integers(60, 3000)) if recent else int(rng.integers(7200, 5 * 86400))
        older = sorted((last + rng.integers(3600, 20 * 86400, size=int(rng.integers(0, 4)))).tolist(), reverse=True)
        liked = bool(rng.random() < (0.8 if recent else 0.15))
        rows.append(_row(index, int(rng.integers(0, 40)), [*older, last], liked))  # items seen in every split
    return rows


def _splits(rows_by_split: dict) -> DatasetDict:
    return DatasetDict({name: Dataset(pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA))
                        for name, rows in rows_by_split.items()})  # fmt: skip


@pytest.fixture
def recency_data():
    return _splits({"train": _recency_rows(300, 0), "validation": _recency_rows(150, 1), "test": _recency_rows(150, 2)})


# ---------------------------------------------------------------------------------------------------------------
# prepare and the simulator write the history sessions' starts


def test_prepare_writes_each_history_sessions_start(tmp_path):
    log = tmp_path / "log.csv"
    rows = []  # user, item, category, behavior, timestamp
    for user in range(1, 4):
        for k in range(6):
            rows.append(f"{user},{100 + k},7,pv,{1_511_600_000 + user * 10 + k * 5000}")
    log.write_text("\n".join(rows) + "\n")
    convert_log(log, "taobao", tmp_path / "data", progress=False)
    data, _, _ = load_data_dir(tmp_path / "data")
    seen = 0
    for split in data.values():
        for row in split:
            starts = row["history_session_starts"]
            assert len(starts) == len(row["history_item_ids"])
            assert starts == sorted(starts) and all(start < row["session_start"] for start in starts)
            user = int(row["user"])
            # Each history item is one of the user's earlier (user, item) sessions: its start is its first event.
            assert starts == [1_511_600_000 + user * 10 + k * 5000 for k in range(len(starts))]
            seen += len(starts)
    assert seen > 0


def test_simulated_examples_hold_the_history_sessions_starts(simulated_data_dir):
    data, _, _ = load_data_dir(simulated_data_dir)
    row = data["train"][0]
    starts = row["history_session_starts"]
    assert len(starts) == len(row["history_item_ids"]) > 0
    assert starts == sorted(starts) and starts[-1] <= row["session_start"]


# ---------------------------------------------------------------------------------------------------------------
# the collator


def test_collator_gives_the_kept_items_ages_alike_from_rows_and_arrow(tokenizer):
    rows = [_row(0, 1, [9000, 500, 60], True), _row(1, 2, [], False), _row(2, 3, [7, 3, 2, 1], False)]
    assert "history_item_ages" not in A2GenDataCollator(tokenizer)(rows)  # only when asked for: columns not read
    collator = A2GenDataCollator(tokenizer, max_history_items=3, history_ages=True)
    batch = collator(rows)
    expected = torch.tensor([[9000.0, 500.0, 60.0], [0.0, 0.0, 0.0], [3.0, 2.0, 1.0]])  # the last 3 kept
    assert torch.equal(batch["history_item_ages"], expected)
    assert batch["history_item_ages"].dtype == torch.float32
    from_arrow = collator(pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA))
    assert torch.equal(from_arrow["history_item_ages"], expected)


def test_collator_asked_for_ages_refuses_missing_partial_or_broken_times(tokenizer):
    collator = A2GenDataCollator(tokenizer, history_ages=True)
    older = [{k: v for k, v in _row(0, 1, [60], True).items() if k != "history_session_starts"}]
    assert "history_item_ages" not in A2GenDataCollator(tokenizer)(older)  # a model without time features
    with pytest.raises(KeyError, match="'history_session_starts' because the model reads .* run a2gen prepare"):
        collator(older)
    with pytest.raises(ValueError, match="list 0 of column 'history_session_starts' in the batch is null"):
        collator(pa.Table.from_pylist(older, schema=EXAMPLE_SCHEMA))  # a null column
    with pytest.raises(ValueError, match=r"example 1 of the batch has no \['history_session_starts'\]"):
        collator([_row(0, 1, [60], True), {**older[0], "history_session_starts": None}])
    with pytest.raises(ValueError, match="example 0 .* history_session_starts value 2000000100"):
        collator([_row(0, 1, [-100], True)])  # a history session after its example's
    in_milliseconds = {**_row(0, 1, [60], True), "session_start": NOW * 1000, "history_session_starts": [NOW * 1000]}
    with pytest.raises(ValueError, match="example 0 .* session_start value 2000000000000; .*not milliseconds"):
        collator([in_milliseconds])  # read as seconds: ages 1000 times too long (as the request paths refuse it)
    with pytest.raises(ValueError, match="history_session_starts value 2000000000000; .*not milliseconds"):
        collator(pa.Table.from_pylist([{**in_milliseconds, "session_start": NOW}], schema=EXAMPLE_SCHEMA))
    with pytest.raises(ValueError, match="holds 1999999939.5 .*not whole Unix seconds"):
        collator([{**_row(0, 1, [60], True), "history_session_starts": [NOW - 60.5]}])
    without_start = pa.Table.from_pylist([_row(0, 1, [60], True)]).drop_columns(["session_start"])
    with pytest.raises(KeyError, match="no column.*session_start"):
        collator(without_start)
    broken = _row(0, 1, [60, 30], True)
    broken["history_session_starts"] = broken["history_session_starts"][:1]
    with pytest.raises(ValueError, match="1 lists in 'history_session_starts' but 2 history items"):
        collator([broken])
    assert A2GenDataCollator(tokenizer)([broken, _row(0, 1, [-100], True)])  # not read without history_ages


# ---------------------------------------------------------------------------------------------------------------
# the features: the model's and the regression's are the same numbers


def test_model_time_features_equal_the_regressions(tokenizer, recency_data):
    """The wide start maps the regression's time columns onto the model's: the starting model ranks exactly as the
    fitted regression with time features, which reads them with numpy."""
    model = create_model("a2gen-iag", tokenizer, recency_data, **SPARSE)
    regression = start_from_regression(model, tokenizer, recency_data, residual=True, frozen=True)
    assert regression.time_features
    batch = A2GenDataCollator.from_config(model.config, tokenizer)(recency_data["test"])
    model.eval()
    with torch.no_grad():
        probabilities = model.predict_actions(
            **{name: value for name, value in batch.items() if not name.startswith("label")}
        ).action_probabilities.numpy()
    expected = regression.predict(recency_data["test"])["action_probabilities"]
    np.testing.assert_allclose(probabilities[:, LIKE], expected[:, LIKE], atol=1e-4)  # float32 against float64


def test_time_features_by_hand(tokenizer):
    rows = [_row(0, 1, [2 * 86400, 1800, 600], True), _row(1, 2, [], False)]
    history = HistoryCounts.from_dataset(Dataset(pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA)), 5, 50, times=True)
    features = history.time_features()
    assert features.shape == (2, history_time_feature_size(5))
    ten_minutes, hour, day, week = HISTORY_DECAY_SCALES
    ages = np.array([2 * 86400, 1800, 600.0])
    # Per action (4 actions: start, like, follow, leave), every item has start and leave.
    np.testing.assert_allclose(features[0, 0], np.log1p(np.exp(-ages / ten_minutes).sum()))
    np.testing.assert_allclose(features[0, 4], np.log1p(np.exp(-ages / hour).sum()))
    np.testing.assert_allclose(features[0, 8 + 3], np.log1p(np.exp(-ages / day).sum()))
    np.testing.assert_allclose(features[0, 12 + 3], np.log1p(np.exp(-ages / week).sum()))
    assert features[0, 1] == features[0, 2] == 0.0  # like / follow: in no history item
    once = features[0, 16:]
    np.testing.assert_allclose(once, np.log1p([10.0, 2, 2, 2, 2, 0]))  # 10 minutes; 2 within the hour and day
    np.testing.assert_allclose(features[1, 16:], np.log1p([NO_RECENT_SESSION_SECONDS / 60, 0, 0, 0, 0, 0]))


def test_time_features_carry_what_counts_miss(tokenizer, recency_data):
    """A label that only the times tell: the regression with them ranks well, the one on counts cannot."""
    from sklearn.metrics import roc_auc_score

    labels = np.array([LIKE in row for row in recency_data["test"]["action_ids"]])
    scores = {}
    for name, regression in (("counts", CountFeatureLogisticRegression(tokenizer)),
                             ("times", TimedLogisticRegression(tokenizer))):  # fmt: skip
        fitted = regression.fit(recency_data["train"], recency_data["validation"])
        scores[name] = roc_auc_score(labels, fitted.predict(recency_data["test"])["action_probabilities"][:, LIKE])
    assert scores["times"] > 0.75 and scores["counts"] < 0.65


def test_the_model_reads_the_ages(tokenizer, recency_data):
    model = create_model("a2gen-iag", tokenizer, recency_data, **SPARSE)
    start_from_regression(model, tokenizer, recency_data, residual=True, frozen=True)
    model.eval()
    batch = A2GenDataCollator.from_config(model.config, tokenizer)(recency_data["test"].select(range(8)))
    inputs = {name: value for name, value in batch.items() if not name.startswith("label")}
    with torch.no_grad():
        recent = model.predict_actions(**inputs).action_probabilities
        older = model.predict_actions(**{**inputs, "history_item_ages": inputs["history_item_ages"] + 86400.0})
    assert not torch.allclose(recent[:, LIKE], older.action_probabilities[:, LIKE])


# ---------------------------------------------------------------------------------------------------------------
# refusals


def test_refusals_name_the_input_and_the_fix(tokenizer, recency_data):
    with pytest.raises(ValueError, match="history_time_features=True .* set history_count_features too"):
        A2GenConfig(action_names=ACTIONS, start_action="start", end_action="leave", history_time_features=True)
    model = create_model("a2gen-iag", tokenizer, recency_data, **SPARSE)
    batch = A2GenDataCollator.from_config(model.config, tokenizer)(recency_data["test"].select(range(4)))
    inputs = {name: value for name, value in batch.items() if not name.startswith("label")}
    with pytest.raises(ValueError, match="got no history_item_ages: .* run a2gen prepare again"):
        model.predict_actions(**{name: value for name, value in inputs.items() if name != "history_item_ages"})
    ages = inputs["history_item_ages"].clone()
    padding = (inputs["history_mask"] == 0).nonzero()
    if len(padding):  # an age at a padding slot is no item's: not read, not refused
        ages[tuple(padding[0])] = -1.0
        check_model_inputs(model.config, model.dtype, history_item_ages=ages, history_mask=inputs["history_mask"])
    row, slot = (int(index) for index in inputs["history_mask"].nonzero()[-1])
    ages[row, slot] = -1.0
    with pytest.raises(ValueError, match=rf"holds a negative age \(-1.0\) at example {row}, history slot {slot}"):
        check_model_inputs(model.config, model.dtype, history_item_ages=ages, history_mask=inputs["history_mask"])
    ages[row, slot] = float("nan")
    with pytest.raises(ValueError, match=rf"holds a NaN age \(nan\) at example {row}, history slot {slot}"):
        check_model_inputs(model.config, model.dtype, history_item_ages=ages, history_mask=inputs["history_mask"])
    with pytest.raises(TypeError, match="history_item_ages must hold seconds"):
        check_model_inputs(None, None, history_item_ages=ages > 0)
    for coarse in (torch.bfloat16, torch.float16):  # 3599 s would read as 3600 s; float16 overflows past 18 hours
        with pytest.raises(TypeError, match="too coarse for seconds: pass float32"):
            model.predict_actions(**{**inputs, "history_item_ages": inputs["history_item_ages"].to(coarse)})
    counts_only = CountFeatureLogisticRegression(tokenizer).fit(recency_data["train"], recency_data["validation"])
    with pytest.raises(ValueError, match="fitted with time_features=False but the model has history_time_features=True"):
        warm_start_wide_path(model, counts_only)
    older = recency_data["train"].remove_columns("history_session_starts")
    with pytest.raises(ValueError, match=r"no column\(s\) \['history_session_starts'\].* run a2gen prepare"):
        TimedLogisticRegression(tokenizer).fit(older, recency_data["validation"])
    # The regression on counts alone reads no times: broken ones do not stop it.
    broken = [{**row, "history_session_starts": [NOW + 5] * len(row["history_item_ids"])} for row in _recency_rows(40, 3)]
    CountFeatureLogisticRegression(tokenizer, c_grid=(1.0,)).fit(_splits({"train": broken})["train"])
    for bad, message in ((None, "holds a null"), (NOW + 0.5, r"holds 2000000000.5 \(value 3\), not whole Unix seconds")):
        rows = _recency_rows(40, 4)
        rows[3] = {**rows[3], "session_start": bad}
        with pytest.raises(ValueError, match=f"Column 'session_start' {message}"):
            TimedLogisticRegression(tokenizer, c_grid=(1.0,)).fit(
                Dataset(pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA.set(
                    EXAMPLE_SCHEMA.get_field_index("session_start"), pa.field("session_start", pa.float64()))))
            )


def test_notime_ablation_puts_every_history_session_now(tokenizer):
    batch = A2GenDataCollator(tokenizer, history_ages=True)([_row(0, 1, [600, 60], True)])
    ablated = ABLATIONS["notime"](dict(batch))
    assert not ablated["history_item_ages"].any() and batch["history_item_ages"].any()


def test_the_flag_and_the_recipe_switch_it_on(tmp_path):
    from a2gen_hf.cli import parse_arguments

    args = parse_arguments(["compare", "--recipe", "sparse_logs", "--data", str(tmp_path), "--output", "out"])
    assert args.time_features is True and args.count_features is True
    args = parse_arguments(["compare", "--recipe", "sparse_logs", "--no-time-features", "--data", str(tmp_path),
                            "--output", "out"])  # fmt: skip
    assert args.time_features is False
    assert Path(__file__).parent.joinpath("..", "src", "a2gen_hf", "recipes", "sparse_logs.yaml").read_text().count(
        "time_features: true"
    ) == 1


def test_parquet_shards_written_before_the_column_still_load(tmp_path):
    import pyarrow.parquet as pq

    from a2gen_hf.data.folder import load_parquet
    from a2gen_hf.data.simulator import SimulatorConfig, simulate_to_parquet

    config = SimulatorConfig(num_examples=60, history_length=3, num_items=50, item_buckets=1024, user_buckets=256,
                             side_feature_buckets=64)  # fmt: skip
    simulate_to_parquet(config, tmp_path / "sim", shard_size=100, progress=False)
    assert "history_session_starts" in load_parquet(tmp_path / "sim", cache_dir=str(tmp_path / "c1"))["train"].column_names
    for shard in (tmp_path / "sim").glob("*/*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["history_session_starts"]), shard)
    older = load_parquet(tmp_path / "sim", cache_dir=str(tmp_path / "c2"))
    assert "history_session_starts" not in older["train"].column_names and len(older["train"]) > 0
    simulate_to_parquet(config, tmp_path / "sim2", shard_size=100, progress=False)  # one shard lacks it
    shard = sorted((tmp_path / "sim2").glob("train/*.parquet"))[-1]
    pq.write_table(pq.read_table(shard).drop_columns(["history_session_starts"]), shard)
    with pytest.raises(ValueError, match="1 of the .* Parquet shards lack the history_session_starts column"):
        load_parquet(tmp_path / "sim2", cache_dir=str(tmp_path / "c3"))


def _older_folder(simulated_data_dir, tmp_path) -> Path:
    """A copy of the simulated data folder without history_session_starts (as written before the column existed)."""
    import shutil

    from datasets import load_from_disk

    older = tmp_path / "older"
    shutil.copytree(simulated_data_dir, older)
    for split in ("train", "validation", "test"):
        dataset = load_from_disk(str(simulated_data_dir / split)).remove_columns("history_session_starts")
        shutil.rmtree(older / split)
        dataset.save_to_disk(str(older / split))
    return older


def test_commands_refuse_old_data_for_the_time_features_before_any_work(simulated_data_dir, tmp_path, capsys):
    from a2gen_hf.cli import main

    older = _older_folder(simulated_data_dir, tmp_path)
    assert "history_session_starts" not in load_data_dir(older)[0]["train"].column_names
    tiny = ["--hidden-size", "8", "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress", "--cpu"]
    code = main(["train", "--data", str(older), "--output", str(tmp_path / "run"), "--count-features", "--time-features",
                 "--max-steps", "2", *tiny])  # fmt: skip
    assert code == 2 and "the training split has no column(s) ['history_session_starts']" in capsys.readouterr().err
    code = main(["compare", "--data", str(older), "--output", str(tmp_path / "cmp"), "--models", "a2gen-iag",
                 "--simple", "popularity,logreg-times", "--seeds", "1", "--epochs", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "read by logreg-times, has no column(s) ['history_session_starts']" in err
    assert not (tmp_path / "cmp" / "runs").exists()  # refused before anything trained
    # The networks reading the times: refused as clearly (before: the test split was collated first, a KeyError)
    code = main(["compare", "--data", str(older), "--output", str(tmp_path / "cmp2"), "--models", "a2gen-iag",
                 "--count-features", "--time-features", "--simple", "", "--seeds", "1", "--epochs", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "read by the networks (--time-features), has no column(s) ['history_session_starts']" in err
    # Everything that does not read the times works on the older folder as before.
    assert main(["train", "--data", str(older), "--output", str(tmp_path / "run2"), "--count-features",
                 "--max-steps", "2", *tiny]) == 0  # fmt: skip
    # A saved model that reads them: evaluate and the Trainer say to prepare again, not to leave the features out
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(tmp_path / "timed"), "--count-features",
                 "--time-features", "--max-steps", "2", *tiny]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "timed" / "model"), "--data", str(older)]) == 2
    err = capsys.readouterr().err
    assert "run a2gen prepare (or a2gen simulate) again (the model was trained to read them)" in err
    assert "--no-time-features" not in err
    from a2gen_hf import AutoModelForActionGeneration
    from a2gen_hf.training import A2GenTrainer, a2gen_training_arguments

    model = AutoModelForActionGeneration.from_pretrained(str(tmp_path / "timed" / "model"))
    old_splits = load_data_dir(older)[0]
    with pytest.raises(ValueError, match=r"the eval dataset has no column\(s\) \['history_session_starts'\]"):
        A2GenTrainer(model=model, args=a2gen_training_arguments(str(tmp_path / "trainer"), use_cpu=True,
                                                                report_to="none"),
                     train_dataset=load_data_dir(simulated_data_dir)[0]["train"],
                     eval_dataset=old_splits["validation"])  # fmt: skip


def test_coarse_session_times_are_named_with_the_features_they_mute():
    from datasets import Dataset

    from a2gen_hf.data.collator import coarse_session_times_note, session_time_resolution

    days = Dataset.from_dict({"session_start": [86400 * 17_500, 86400 * 17_503, 86400 * 17_510]})
    assert session_time_resolution(days) == 86400
    note = coarse_session_times_note(days, "D")
    assert note.startswith("D: every session start is a whole multiple of 1 day")
    assert "the decays over 10 minutes and 1 hour and the counts within the last 1 hour and 1 day" in note
    assert "floored to 1 day" in note
    seconds = Dataset.from_dict({"session_start": [1_512_000_000, 1_512_000_017, 1_512_086_400]})
    assert session_time_resolution(seconds) == 1 and coarse_session_times_note(seconds, "D") is None
    # the rows of a selection, not its whole table: the two whole-day rows alone are coarse
    assert session_time_resolution(seconds.select([2])) == 1_512_086_400 // 1 and session_time_resolution(
        Dataset.from_dict({"session_start": [7200, 10800]})) == 3600  # fmt: skip
    hours = coarse_session_times_note(Dataset.from_dict({"session_start": [7200, 10800]}), "D")
    assert "within the last 1 hour" in hours and "decays" not in hours  # an hour / 10 > 10 minutes: still read
    assert session_time_resolution(Dataset.from_dict({"session_start": []})) == 0


def test_training_on_dates_without_a_time_of_day_warns(simulated_data_dir, tmp_path, capsys):
    import shutil

    from datasets import load_from_disk

    from a2gen_hf.cli import main

    daily = tmp_path / "daily"
    shutil.copytree(simulated_data_dir, daily)
    for split in ("train", "validation", "test"):
        floored = load_from_disk(str(simulated_data_dir / split)).map(lambda row: {
            "session_start": row["session_start"] // 86400 * 86400,
            "history_session_starts": [start // 86400 * 86400 for start in row["history_session_starts"]],
        }, keep_in_memory=True)  # fmt: skip  (no cache file beside the shared folder's arrow files)
        shutil.rmtree(daily / split)
        floored.save_to_disk(str(daily / split))
    tiny = ["--hidden-size", "8", "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress", "--cpu"]
    code = main(["train", "--data", str(daily), "--output", str(tmp_path / "run"), "--count-features",
                 "--time-features", "--max-steps", "2", *tiny])  # fmt: skip
    assert code == 0
    assert "The training split: every session start is a whole multiple of 1 day" in capsys.readouterr().err
    code = main(["train", "--data", str(simulated_data_dir), "--output", str(tmp_path / "run2"), "--count-features",
                 "--time-features", "--max-steps", "2", *tiny])  # fmt: skip
    assert code == 0 and "whole multiple of" not in capsys.readouterr().err


def test_every_wide_column_the_model_computes_is_the_regressions(simulated_data_dir):
    """The count features are computed twice, in torch for the model (``HistoryCountFeatures``, the popularity
    features) and in numpy for the regression (``CountFeatureLogisticRegression.features``); the wide start copies
    the regression's coefficients onto the model's columns by ``_wide_feature_columns``. Every mapped column must
    then hold the same standardised value on both sides, for every action (not only the end-to-end probability of
    one): a drift in any column would silently misplace a coefficient."""
    from a2gen_hf.training.simple_baselines import _wide_feature_columns

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    window = max(len(items) for split in data.values() for items in split["history_item_ids"])
    events = max(len(item) for split in data.values() for items in split["history_action_ids"] for item in items)
    caps = {"max_history_items": window, "max_events_per_item": events}  # the regression reads every event
    model = create_model("a2gen-iag", tokenizer, data, **{**SPARSE, **caps})
    regression = start_from_regression(model, tokenizer, data, residual=True, frozen=True)
    extras = next(module for module in model.modules() if type(module).__name__ == "ExtraContextFeatures")
    captured = []
    handle = extras.register_forward_hook(lambda module, inputs, output: captured.append(output.detach()))
    test = data["test"]
    batch = A2GenDataCollator.from_config(model.config, tokenizer)(test.to_list())
    model.eval()
    with torch.no_grad():
        model.predict_actions(**{name: value for name, value in batch.items() if not name.startswith("label")})
    handle.remove()
    features = torch.cat(captured).double().numpy()
    expected = regression.scaler_.transform(regression.features(test))
    pairs = _wide_feature_columns(regression, model.config)
    assert len(pairs) == expected.shape[1]  # every regression column has its model column
    varying = 0
    for source, target in pairs:
        np.testing.assert_allclose(features[:, target], expected[:, source], rtol=1e-4, atol=1e-3,
                                   err_msg=f"regression column {source} against model column {target}")  # fmt: skip
        varying += bool(np.ptp(expected[:, source]) > 0)
    assert varying >= len(pairs) // 2  # the check is not carried by constant columns
