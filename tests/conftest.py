"""Fixtures every test gets: its own Hugging Face caches and one torch thread."""

import datasets
import pytest
import torch
from hypothesis import settings

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
