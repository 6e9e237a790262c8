"""Fixtures every test gets (its own Hugging Face caches, one torch thread) and the one tiny model of the tests.

The tiny model: :data:`TINY_SIZES`, :func:`tiny_config`, :func:`build_tiny_model` and the ``tiny_model`` fixture (a
factory), with :func:`make_batch` for a matching batch. They are plain functions too, for ``parametrize`` lists that
are built before any fixture runs (``from conftest import tiny_config``).
"""

import sys

import datasets
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from accelerate.tracking import GeneralTracker
from hypothesis import settings

from a2gen_hf import A2GenConfig, A2GenForActionGeneration
from a2gen_hf.data.simulator import SimulatorConfig, simulate

# The same generated examples on every run: a red CI means a regression, never an unlucky draw.
settings.register_profile("a2gen", derandomize=True)
settings.load_profile("a2gen")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models run about ten times faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_hf_cache(tmp_path, monkeypatch):
    """HF_HOME and the datasets cache in the test's temporary folder (datasets reads its cache path at import)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


@pytest.fixture(scope="session")
def simulated_data_dir(tmp_path_factory):
    """A small simulated data folder (400 examples, small hash tables) shared by the training tests."""
    folder = tmp_path_factory.mktemp("simulated")
    config = SimulatorConfig(
        num_examples=400, history_length=5, num_items=200, item_buckets=4096, user_buckets=1024,
        side_feature_buckets=256,
    )
    simulate(config, progress=False, cache_dir=str(folder / "cache")).save(folder / "data")
    return folder / "data"


# ----------------------------------------------------------------------------------------------------------------
# The tiny model

# Widths, caps and tables of every tiny A2Gen of the tests (fast on one CPU thread; ids of make_batch fit them).
TINY_SIZES = dict(
    hidden_size=16, num_attention_heads=4, id_embedding_size=8, action_embedding_size=8, time_embedding_size=8,
    max_history_items=6, max_events_per_item=4, max_actions=5, user_buckets=50, item_buckets=200,
    side_feature_buckets=30, num_item_side_features=2,
)  # fmt: skip
TINY_USER_SIDE_LISTS = 2  # lists of make_batch's user_side_ids (3 ids each)


def tiny_config(generator="iag", **overrides) -> A2GenConfig:
    """:data:`TINY_SIZES` with ``generator`` and two user side lists; ``overrides`` win."""
    return A2GenConfig(**{"generator": generator, **TINY_SIZES, "num_user_side_lists": TINY_USER_SIDE_LISTS, **overrides})


def build_tiny_model(generator="iag", seed=0, **overrides) -> A2GenForActionGeneration:
    """A tiny A2Gen (:func:`tiny_config`) initialised from ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return A2GenForActionGeneration(tiny_config(generator, **overrides)).eval()


@pytest.fixture
def tiny_model():
    """The factory :func:`build_tiny_model`: ``tiny_model("eag", max_actions=3)`` is a seeded tiny A2Gen."""
    return build_tiny_model


def make_batch(config, batch_size=4, items=5, events=3, seed=0):
    """A random batch for ``config`` (ids inside its tables, sorted label times, sequences ending in the end action)."""
    generator = torch.Generator().manual_seed(seed)
    vocab = config.vocab_size

    def ints(high, *shape):
        return torch.randint(1, high, shape, generator=generator)

    history_action_ids = ints(vocab, batch_size, items, events)
    history_action_ids[:, :, 0] = config.start_action_id
    labels = torch.zeros(batch_size, config.max_actions + 1, dtype=torch.long)
    labels[:, 0] = config.start_action_id
    for row in range(batch_size):
        length = 1 + row % config.max_actions
        labels[row, 1:length] = ints(config.end_action_id, length - 1)
        labels[row, 1:length][labels[row, 1:length] == config.start_action_id] = 2
        labels[row, length] = config.end_action_id
    label_times = torch.sort(torch.randn(batch_size, config.max_actions + 1, generator=generator), dim=1).values
    return dict(
        user_ids=ints(config.user_buckets, batch_size),
        item_ids=ints(config.item_buckets, batch_size),
        item_side_ids=ints(config.side_feature_buckets, batch_size, config.num_item_side_features),
        user_side_ids=ints(config.item_buckets, batch_size, config.num_user_side_lists, 3),
        history_item_ids=ints(config.item_buckets, batch_size, items),
        history_item_side_ids=ints(config.side_feature_buckets, batch_size, items, config.num_item_side_features),
        history_action_ids=history_action_ids,
        history_action_times=torch.randn(batch_size, items, events, generator=generator),
        labels=labels,
        label_times=label_times,
    )


def history_inputs(batch):
    """The batch without its labels (what generate and the ranker read)."""
    return {key: value for key, value in batch.items() if not key.startswith("label")}


def accelerate_two_processes() -> list[str]:
    """The start of an `accelerate launch` of two CPU processes (DDP over gloo; the environment sets
    ACCELERATE_USE_CPU=1), followed by the script (or -m module) and its arguments. Each launch gets a free port:
    two launches at once on accelerate's default 29500 (pytest -n 2) failed with EADDRINUSE."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
    ]


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide state, so that the next test builds its own Accelerator."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def fresh_accelerate_state():
    """A test that builds its own Accelerator leaves Accelerate's process-wide state as it found it (clean): use it
    with ``pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")`` or as an argument."""
    yield
    reset_accelerate_state()


class RecordingTracker(GeneralTracker):
    """Keeps what the training loop logs, in memory (no tracker package is installed offline)."""

    name = "recording"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.config, self.entries, self.finished = None, [], False

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        self.config = values

    def log(self, values, step=None, **kwargs):
        self.entries.append((step, dict(values)))

    def finish(self):
        self.finished = True
