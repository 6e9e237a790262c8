"""Which group (GAUC, NDCG@K / Recall@K) an example belongs to: one home, metrics/evaluation.py, for
predict_dataloader / evaluate_model and A2GenTrainer (whose trainer-level checks are in test_trainer.py)."""

import datasets
import numpy as np
import pytest
import torch
from conftest import make_batch, tiny_config
from torch.utils.data import DataLoader

from a2gen_hf import A2GenForActionGeneration
from a2gen_hf.metrics import predict_dataloader, user_groups
from a2gen_hf.metrics.evaluation import (
    batch_groups,
    check_user_column,
    evaluation_group_column,
    missing_user_error,
)


def test_batch_groups_takes_the_named_column_and_refuses_a_missing_one():
    batch = {"user_ids": torch.tensor([3, 3, 7]), "user_keys": torch.tensor([11, 12, 13]), "labels": torch.zeros(3, 2)}
    assert batch_groups(batch).tolist() == [3, 3, 7]  # the hashed users by default
    assert batch_groups(batch, "user_keys").tolist() == [11, 12, 13]
    assert batch_groups(batch, None) is None
    with pytest.raises(ValueError, match=r"group_column='user_keys' is missing in the batch .*user_keys=True"):
        batch_groups({"user_ids": batch["user_ids"]}, "user_keys")
    with pytest.raises(ValueError, match=r"group_column='request' is not a tensor"):
        batch_groups({**batch, "request": [1, 2, 3]}, "request")
    assert evaluation_group_column(batch) == "user_keys"
    assert evaluation_group_column({"user_ids": batch["user_ids"]}) == "user_ids"
    assert evaluation_group_column({"labels": batch["labels"]}) is None


def test_a_missing_raw_user_is_refused_naming_the_example():
    """user_groups (a2gen evaluate / train / compare / demo) refused a None user with raw_id_keys' message, which
    named no example; a data set's user column is checked by the same rule as the Trainer's and the collator's."""
    examples = datasets.Dataset.from_dict({"user": ["a", "b", None, "a"], "x": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match=r"user_groups: example 2 has no raw 'user' id \(None\)"):
        user_groups(examples)
    with pytest.raises(ValueError, match=r"the split: example 2 has no raw 'user' id"):
        check_user_column(examples, "the split")
    # A selection of the rows is read as selected (the table under it still holds the None).
    check_user_column(examples.select([0, 1, 3]), "the split")
    assert user_groups(examples.select([0, 1, 3])).tolist()[0] == user_groups(examples.select([0, 1, 3])).tolist()[2]
    with pytest.raises(ValueError, match=r"the split: example 1 has no raw"):
        check_user_column(examples.select([3, 2]), "the split")
    check_user_column(examples.remove_columns("user"), "the split")  # no column: the hashed user_ids group them
    assert "Fill that example's user" in str(missing_user_error("here", 0))


def test_predict_dataloader_groups_through_batch_groups():
    torch.manual_seed(0)
    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    batch = make_batch(config, seed=0)
    rows = [{name: value[index] for name, value in batch.items()} for index in range(len(batch["user_ids"]))]

    def collate(items, keys=True):
        collated = {name: torch.stack([item[name] for item in items]) for name in items[0]}
        if keys:
            collated["user_keys"] = collated["user_ids"] * 10
        return collated

    arrays = predict_dataloader(model, DataLoader(rows, batch_size=2, collate_fn=collate), group_column="user_keys")
    assert arrays["group_ids"].tolist() == (batch["user_ids"] * 10).tolist()
    default = predict_dataloader(model, DataLoader(rows, batch_size=2, collate_fn=collate))
    assert np.array_equal(default["group_ids"], batch["user_ids"].numpy())
    with pytest.raises(ValueError, match=r"group_column='user_keys' is missing in the batch"):
        predict_dataloader(model, DataLoader(rows, batch_size=2, collate_fn=lambda items: collate(items, keys=False)),
                           group_column="user_keys")  # fmt: skip
