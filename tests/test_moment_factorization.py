"""The moment table's warm start from who engaged where (a2gen_hf.training.moment_factorization)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from a2gen_hf.data.folder import load_data_dir
from a2gen_hf.metrics import ranked_action_ids
from a2gen_hf.training.data_setup import create_model
from a2gen_hf.training.moment_factorization import (
    MomentSessions,
    apply_moment_start,
    collect_sessions,
    engagement_layouts,
    moment_table,
    start_moment_table_from_events,
)

TABLE = {"history_event_item_moments": 16, "history_event_moment_source": "table", "hidden_size": 16,
         "id_embedding_size": 8}


@pytest.fixture(scope="module")
def simulated(simulated_data_dir):
    dataset, tokenizer, _ = load_data_dir(simulated_data_dir)
    return dataset, tokenizer


def rows(tokenizer) -> Dataset:
    """Two examples of user 7 whose histories repeat one session (item 3: like at 2.5 s, comment at 4 s, leave at
    9 s), and one of user 8 with a NaN time (item 4)."""
    ids = tokenizer.get_vocab()
    start, like, comment, leave = ids["start"], ids["like"], ids["comment"], ids["leave"]
    shared = ([start, like, comment, leave], [0.0, 2.5, 4.0, 9.0])
    return Dataset.from_list([
        {"user_id": 7, "item_id": 5, "history_item_ids": [3], "history_action_ids": [shared[0]],
         "history_action_seconds": [shared[1]], "action_ids": [start, leave], "action_seconds": [0.0, 1.0]},
        {"user_id": 7, "item_id": 6, "history_item_ids": [3, 5], "history_action_ids": [shared[0], [start, leave]],
         "history_action_seconds": [shared[1], [0.0, 1.0]], "action_ids": [start, like, leave],
         "action_seconds": [0.0, 7.2, 8.0]},
        {"user_id": 8, "item_id": 5, "history_item_ids": [4], "history_action_ids": [[start, like, leave]],
         "history_action_seconds": [[0.0, float("nan"), 3.0]], "action_ids": [start, like, leave],
         "action_seconds": [0.0, 1.5, 3.0]},
    ])  # fmt: skip


def test_sessions_are_distinct_with_each_actions_first_moment(simulated):
    _, tokenizer = simulated
    sessions = collect_sessions(rows(tokenizer), tokenizer, moment_count=8, seconds_per_moment=1.0, chunk_size=2)
    engaged = ranked_action_ids(tokenizer)
    assert [tokenizer.convert_ids_to_tokens(index) for index in engaged] == ["like", "follow", "forward", "comment"]
    # user 7: item 3 once (repeated by two histories, across chunks), item 5 once (history and target alike), item 6;
    # user 8: items 4 and 5.
    found = {(int(user), int(item)): first.tolist() for user, item, first in zip(sessions.users, sessions.items,
                                                                                   sessions.first)}
    leaves = {(int(user), int(item)): int(end)
              for user, item, end in zip(sessions.users, sessions.items, sessions.ends)}
    assert len(sessions) == 5 and len(found) == 5
    # The leave's bucket; -1 in the last bucket (9 s and 8 s of 8 buckets: capped, no position).
    assert leaves == {(0, 3): -1, (0, 5): 1, (0, 6): -1, (1, 4): 3, (1, 5): 3}
    assert found[(0, 3)] == [2, -1, -1, 4]  # like at 2.5 s -> bucket 2, comment at 4 s -> bucket 4
    assert found[(0, 6)] == [7, -1, -1, -1]  # 7.2 s
    assert found[(1, 4)] == [-1, -1, -1, -1]  # its like has no usable time
    assert found[(1, 5)] == [1, -1, -1, -1]
    capped = collect_sessions(rows(tokenizer), tokenizer, moment_count=4, seconds_per_moment=2.0)
    assert {tuple(first) for first in capped.first.tolist()} >= {(1, -1, -1, 2), (3, -1, -1, -1)}  # 7.2 s: last bucket


def test_seconds_land_in_the_buckets_the_model_gives_the_collated_times(simulated):
    from a2gen_hf.data.collator import A2GenDataCollator
    from a2gen_hf.modeling_a2gen import EventMoments

    _, tokenizer = simulated
    example = rows(tokenizer)[0]
    seconds = [0.0, 0.999, 1.0, 2.0, 5.0, 12.0, 63.5, 100.0]
    example["history_action_ids"] = [[1] + [2] * (len(seconds) - 1)]
    example["history_action_seconds"] = [seconds]
    collated = A2GenDataCollator(tokenizer, max_events_per_item=len(seconds))([example])
    moments = EventMoments(16, 1.0, tokenizer.time_log_mean, tokenizer.time_log_std)
    model_buckets = moments(collated["history_action_times"][0, 0]).tolist()
    assert moments.of_seconds(np.array(seconds)).tolist() == model_buckets
    assert model_buckets[0] == 0 and model_buckets[-2:] == [15, 15]  # capped at the last bucket


def test_sessions_name_a_missing_column(simulated):
    _, tokenizer = simulated
    for column in ("history_action_seconds", "user_id", "item_id"):
        with pytest.raises(ValueError, match=f"no column '{column}'"):
            collect_sessions(rows(tokenizer).remove_columns(column), tokenizer, 8, 1.0)


def test_layouts_put_rows_that_the_same_users_engage_with_together():
    generator = np.random.default_rng(0)
    # 400 users in two taste groups; 40 rows in two content groups; a user engages a row of its group with
    # probability 0.3, of the other group 0.02.
    users, items, first = [], [], []
    for user in range(400):
        for row in range(40):
            if generator.random() < (0.3 if (row < 20) == (user < 200) else 0.02):
                users.append(user)
                items.append(row // 4)
                first.append([row % 4])
    sessions = MomentSessions(np.array(users), np.array(items), np.array(first), np.full(len(users), -1))
    keys, vectors, summary = engagement_layouts(sessions, lambda item, moment: item * 4 + moment, 4, 4, spread=0)
    assert keys.tolist() == list(range(40)) and vectors.shape == (40, 4) and summary["rank"] == 4
    assert torch.allclose(vectors.norm(dim=1), torch.ones(40), atol=1e-5)
    cosine = vectors @ vectors.T
    group = torch.arange(40) < 20
    same = cosine[group[:, None] == group[None, :]].mean()
    other = cosine[group[:, None] != group[None, :]].mean()
    assert same > other + 0.5, (same, other)


def test_layouts_spread_an_engagement_over_its_neighbouring_moments():
    # Three users engage moment 2 of item 0, two moment 0 of item 1: with spread 1 the rows 1-3 of item 0 and 4-5
    # (moments 0-1, clamped) of item 1 are engaged, and moments 1 and 3 of item 0 share moment 2's users.
    sessions = MomentSessions(np.array([0, 1, 2, 3, 4]), np.array([0, 0, 0, 1, 1]), np.array([[2], [2], [2], [0], [0]]),
                              np.full(5, -1))
    keys, vectors, summary = engagement_layouts(sessions, lambda item, moment: item * 4 + moment, 2, 4, spread=1)
    assert keys.tolist() == [1, 2, 3, 4, 5] and summary["engagements"] == 3 * 3 + 2 * 2
    torch.testing.assert_close(vectors[0], vectors[2])
    assert float(vectors[0] @ vectors[3]) < 0.5
    alone, _, summary = engagement_layouts(sessions, lambda item, moment: item * 4 + moment, 2, 4, spread=0)
    assert set(alone.tolist()) <= {2, 4} and summary["engagements"] == 5  # rank 1 of two rows: one is spanned


def test_leaves_tell_apart_rows_that_the_same_users_engage_with():
    # 200 users in two groups engage both rows of each item alike (moment 0 of items 0-9 shows what group A likes,
    # moment 1 what group B likes, but either group engages either moment); group A leaves at moment 1, group B at
    # moment 0; one session of each item (and every one of item 10) runs to the end at moment 3, which says
    # nothing. Engagements alone cannot tell the two moments apart; with the leaves as evidence against, they point
    # apart.
    users, items, first, ends = [199] * 10, list(range(10)), [[-1]] * 10, [3] * 10
    for user in range(200):
        for item in range(10):
            for moment in (0, 1):
                users.append(user), items.append(item), first.append([moment])
                ends.append(1 if user < 100 else 0)
        users.append(user), items.append(10), first.append([0]), ends.append(3)
    sessions = MomentSessions(*(np.array(column) for column in (users, items, first, ends)))
    keys_of = lambda item, moment: item * 4 + moment  # noqa: E731
    _, alone, summary = engagement_layouts(sessions, keys_of, 2, 4, spread=0)
    assert summary["leaves"] == 0
    assert float(alone[0] @ alone[1]) > 0.99  # moments 0 and 1 of item 0: the same users engaged both
    keys, vectors, summary = engagement_layouts(sessions, keys_of, 2, 4, spread=0, leave_weight=0.5)
    assert summary["leaves"] == 200 * 10 and summary["leave_weight"] == 0.5  # item 10's ends at its end: none
    assert 10 * 4 + 3 not in keys.tolist()
    row = {key: vector for key, vector in zip(keys.tolist(), vectors)}
    assert float(row[0] @ row[1]) < 0.5 and float(row[0] @ row[4]) > 0.9  # apart; moment 0 of items 0 and 1 alike


def test_layouts_need_two_rows_and_two_users():
    sessions = MomentSessions(np.array([0, 0]), np.array([1, 1]), np.array([[2], [2]]), np.array([-1, -1]))
    with pytest.raises(ValueError, match="needs at least two of each"):
        engagement_layouts(sessions, lambda item, moment: item * 4 + moment, 4, 4, spread=0)


def test_warm_start_writes_unit_vectors_times_the_scale_into_the_table(simulated):
    dataset, tokenizer = simulated
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TABLE)
    table = moment_table(model)
    assert table is not None and not table.table.weight.any()  # the rows start at zero
    summary = start_moment_table_from_events(model, tokenizer, dataset, size=4, scale=2.0)
    weight = table.table.weight
    assert weight.requires_grad and not summary["frozen"]  # trainable: the rows train on
    written = weight.abs().sum(1) > 0
    assert int(written.sum()) == summary["rows_written"] > 10
    assert not weight[:, 4:].any()  # only the first `size` dimensions
    assert torch.allclose(weight[written].norm(dim=1), torch.full((int(written.sum()),), 2.0), atol=1e-4)
    # A like in the train split lands on its item's row at its moment.
    example = dataset["train"][0]
    ids = tokenizer.get_vocab()
    like_moments = [int(seconds) for action, seconds in zip(example["action_ids"], example["action_seconds"])
                    if action == ids["like"]]
    item_row = model.a2gen.features.item_table_rows(torch.tensor([example["item_id"]]))
    for moment in like_moments[:1]:
        key = table.rows_at(item_row, torch.tensor([[min(moment, 15)]]))
        assert written[key].all()


def test_warm_start_refuses_a_model_without_a_table_of_vectors(simulated):
    dataset, tokenizer = simulated
    plain = create_model("a2gen-iag", tokenizer, dataset, hidden_size=16, id_embedding_size=8)
    with pytest.raises(ValueError, match="--event-item-moments 64"):
        start_moment_table_from_events(plain, tokenizer, dataset)
    topics = create_model("a2gen-iag", tokenizer, dataset, history_event_moment_topics=4, **TABLE)
    with pytest.raises(ValueError, match="topic logits"):
        start_moment_table_from_events(topics, tokenizer, dataset)
    mmoe = create_model("mmoe", tokenizer, dataset)
    assert moment_table(mmoe) is None


def test_warm_start_frozen_takes_no_gradient_and_off_changes_nothing(simulated):
    dataset, tokenizer = simulated
    model = create_model("a2gen-iag", tokenizer, dataset, **TABLE)
    assert apply_moment_start(model, tokenizer, dataset, "off") is None
    assert not moment_table(model).table.weight.any()
    assert apply_moment_start(model, tokenizer, dataset, "frozen")["frozen"]
    assert not moment_table(model).table.weight.requires_grad
    mmoe = create_model("mmoe", tokenizer, dataset)
    assert apply_moment_start(mmoe, tokenizer, dataset, "frozen") is None  # no table: nothing to warm
    with pytest.raises(ValueError, match="'warm' is unknown; use one of off, trainable, frozen"):
        apply_moment_start(model, tokenizer, dataset, "warm")


def test_warm_start_reads_the_train_split_only(simulated):
    dataset, tokenizer = simulated
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, **TABLE)
    only_train = DatasetDict(train=dataset["train"])
    first = start_moment_table_from_events(model, tokenizer, only_train)
    again = start_moment_table_from_events(model, tokenizer, dataset)
    assert first == again


def test_layouts_probe_reports_each_rank_and_spread(simulated_data_dir, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "moment_layouts_probe.py"
    spec = importlib.util.spec_from_file_location("moment_layouts_probe", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report = script.main(["--data", str(simulated_data_dir), "--sizes", "300", "--ranks", "4", "--spreads", "0,1",
                          "--leave-weights", "0,0.5", "--moments", "16", "--output", str(tmp_path)])
    assert [(row["rank"], row["spread"], row["leave_weight"]) for row in report["rows"]] == [
        (4, 0, 0.0), (4, 0, 0.5), (4, 1, 0.0), (4, 1, 0.5)]
    assert all(0 <= row["accuracy"] <= 1 for row in report["rows"])
    with pytest.raises(ValueError, match="--leave-weights='-1'"):
        script.main(["--data", str(simulated_data_dir), "--leave-weights", "-1", "--output", str(tmp_path)])
    for row in report["rows"]:
        assert 0 < row["cells_with_vector"] <= row["cells"] and 0 <= row["accuracy"] <= 1
    # Spreading an engagement to its neighbours gives more cells a vector.
    assert report["rows"][1]["cells_with_vector"] > report["rows"][0]["cells_with_vector"]
    assert "| 300 | 4 | 1 |" in (tmp_path / "layouts_probe.md").read_text()
