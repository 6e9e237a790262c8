"""A2GenRanker(workers=N): the user's terms on a worker thread, the candidates split over N threads of one intra-op
thread each."""

import threading

import pytest
import torch
from test_serving import TIME_TOLERANCE, assert_same_prediction, build, candidates, naive_prediction, one_user

import a2gen_hf.ranking
from a2gen_hf.ranking import A2GenRanker, A2GenRankingProgram, RankingWorkers


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few candidates, so that tiny inputs are split over the workers."""
    monkeypatch.setattr(a2gen_hf.ranking, "MIN_WORKER_BLOCK", 4)


def spy(monkeypatch, owner, name, argument=0):
    """Records (thread name, intra-op threads, length of the argument-th argument) of every call of owner.name."""
    calls, original = [], getattr(owner, name)

    def recorded(self, *args, **kwargs):
        calls.append((threading.current_thread().name, torch.get_num_threads(), args[argument].shape[0]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


@pytest.mark.parametrize("generator", ["iag", "eag"])
@pytest.mark.parametrize("side_features", [True, False])
def test_workers_split_the_work_and_score_as_predict_actions(generator, side_features, small_blocks, monkeypatch):
    overrides = {} if side_features else dict(num_item_side_features=0, num_user_side_lists=0)
    model, config = build(generator, **overrides)
    user, (item_ids, item_side_ids) = one_user(config, "left"), candidates(config, 23)
    serial, parallel = A2GenRanker(model), A2GenRanker(model, workers=2)
    level1 = spy(monkeypatch, type(model.a2gen), "encode_packed_item_events")
    blocks = spy(monkeypatch, A2GenRankingProgram, "forward", argument=5)  # item_ids
    state = parallel.encode_user(**user)
    scores = parallel.score_candidates(state, item_ids, item_side_ids)
    # Level 1 on the 5 history items, the candidates in two blocks (12 + 11), all on worker threads that each run
    # one intra-op thread.
    assert [length for _, _, length in level1] == [5]
    assert sorted(length for _, _, length in blocks) == [11, 12]
    assert all(thread.startswith("a2gen-ranking") and threads == 1 for thread, threads, _ in level1 + blocks)
    assert_same_prediction(scores, naive_prediction(model, user, item_ids, item_side_ids))
    reference_state = serial.encode_user(**user)
    for name in ("user_features", "keys", "values", "score_exponentials"):
        torch.testing.assert_close(getattr(state, name), getattr(reference_state, name), rtol=1e-6, atol=1e-6)
    reference = serial.score_candidates(reference_state, item_ids, item_side_ids)
    torch.testing.assert_close(scores.action_probabilities, reference.action_probabilities, rtol=0, atol=5e-6)
    torch.testing.assert_close(scores.expected_seconds, reference.expected_seconds, **TIME_TOLERANCE)


def test_candidates_are_not_split_below_the_minimum_block(monkeypatch):
    model, config = build("iag")
    ranker = A2GenRanker(model, workers=2)
    blocks = spy(monkeypatch, A2GenRankingProgram, "forward", argument=5)
    count = 2 * a2gen_hf.ranking.MIN_WORKER_BLOCK - 1
    item_ids, item_side_ids = candidates(config, count)
    ranker.score_candidates(ranker.encode_user(**one_user(config)), item_ids, item_side_ids)
    assert [(threads, length) for _, threads, length in blocks] == [(1, count)]
    assert blocks[0][0].startswith("a2gen-ranking")


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
    with pytest.raises(ValueError, match="positive int"):
        RankingWorkers(0)


@pytest.mark.slow
def test_compiled_blocks_on_workers_equal_eager(small_blocks):
    """compile=True with workers: the first block compiles alone on a worker, the others reuse its graphs."""
    from torch._dynamo.utils import counters

    model, config = build("iag")
    user, (item_ids, item_side_ids) = one_user(config), candidates(config, 20)
    eager, compiled = A2GenRanker(model), A2GenRanker(model, chunk_size=8, compile=True, workers=2)
    state = eager.encode_user(**user)
    reference = eager.score_candidates(state, item_ids, item_side_ids).action_probabilities
    torch.testing.assert_close(
        compiled.score_candidates(state, item_ids, item_side_ids).action_probabilities, reference, rtol=0, atol=1e-6
    )
    graphs = counters["stats"]["unique_graphs"]
    torch.testing.assert_close(
        compiled.score_candidates(state, item_ids, item_side_ids).action_probabilities, reference, rtol=0, atol=1e-6
    )
    assert counters["stats"]["unique_graphs"] == graphs
