"""A2GenRanker(compile=True, workers=N): blocks of candidates on N threads of one intra-op thread each; the user's
history terms compiled with a dynamic number of items."""

import threading

import pytest
import torch
from test_serving import TIME_TOLERANCE, assert_same_prediction, build, candidates, naive_prediction, one_user

from a2gen_hf.ranking import A2GenRanker, RankingWorkers


def spy(monkeypatch, owner, name, argument):
    """Records (thread name, intra-op threads, length of the argument-th argument) of every call of owner.name."""
    calls, original = [], getattr(owner, name)

    def recorded(self, *args, **kwargs):
        calls.append((threading.current_thread().name, torch.get_num_threads(), args[argument].shape[0]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


@pytest.mark.slow
def test_compiled_blocks_on_workers_score_as_predict_actions(monkeypatch):
    """The user's terms on a worker, the blocks of candidates compiled (C++ wrapper) and split over the workers."""
    from torch._dynamo.utils import counters

    model, config = build("iag")
    user, (item_ids, item_side_ids) = one_user(config, "left"), candidates(config, 20)
    eager, parallel = A2GenRanker(model), A2GenRanker(model, chunk_size=8, compile=True, workers=2)
    # Both recorded beside the compiled parts: the user's features, then once per block the candidates' extra features.
    users = spy(monkeypatch, type(model.a2gen.features), "user_features", argument=0)
    blocks = spy(monkeypatch, A2GenRanker, "extra_features", argument=1)
    state = parallel.encode_user(**user)
    scores = parallel.score_candidates(state, item_ids, item_side_ids)
    # The user once, the 20 candidates in three blocks of 8 (the last one padded), all on worker threads that each
    # run one intra-op thread.
    assert [length for _, _, length in users] == [1]
    assert [length for _, _, length in blocks] == [8, 8, 8]
    assert all(thread.startswith("a2gen-ranking") and threads == 1 for thread, threads, _ in users + blocks)
    assert_same_prediction(scores, naive_prediction(model, user, item_ids, item_side_ids))
    reference_state = eager.encode_user(**user)
    for name in ("user_features", "keys", "values", "score_exponentials"):
        torch.testing.assert_close(getattr(state, name), getattr(reference_state, name), rtol=1e-6, atol=1e-6)
    reference = eager.score_candidates(reference_state, item_ids, item_side_ids)
    torch.testing.assert_close(scores.action_probabilities, reference.action_probabilities, rtol=0, atol=5e-6)
    torch.testing.assert_close(scores.expected_seconds, reference.expected_seconds, **TIME_TOLERANCE)
    # Other users (3 real history items; 1, which runs eagerly) and another C reuse the compiled graphs.
    graphs = counters["stats"]["unique_graphs"]
    item_ids, item_side_ids = candidates(config, 13, seed=2)
    for real_items in (3, 1):
        other = one_user(config, seed=3)
        other["history_mask"] = torch.zeros_like(other["history_item_ids"])
        other["history_mask"][:, :real_items] = 1
        assert_same_prediction(
            parallel.score_candidates(parallel.encode_user(**other), item_ids, item_side_ids),
            naive_prediction(model, other, item_ids, item_side_ids),
        )
    assert counters["stats"]["unique_graphs"] == graphs


def test_ranking_workers_leave_other_threads_settings_alone():
    caller_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        workers = RankingWorkers(2)
        # Every worker runs one intra-op thread, on its own thread; grad mode is off there.
        seen = workers.map(
            lambda _: (threading.get_ident(), torch.get_num_threads(), torch.is_grad_enabled()), range(2)
        )
        assert {threads for _, threads, _ in seen} == {1} and not any(grad for _, _, grad in seen)
        # The calling thread keeps its count, and a thread started later still takes the process default from it.
        assert torch.get_num_threads() == 3
        later = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [3]
        with pytest.raises(ZeroDivisionError):
            workers.map(lambda value: 1 / value, [1, 0])
    finally:
        torch.set_num_threads(caller_threads)


def test_bad_workers_argument_says_what_is_allowed():
    model, _ = build("iag")
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers="):
            A2GenRanker(model, workers=bad)
    with pytest.raises(ValueError, match="needs compile=True"):
        A2GenRanker(model, workers=2)
    with pytest.raises(ValueError, match="positive int"):
        RankingWorkers(0)
