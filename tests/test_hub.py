"""Hub support, end to end against tests/hub_server.py with the real huggingface_hub / transformers clients.

``huggingface_hub`` reads ``HF_ENDPOINT`` (and ``HF_HUB_OFFLINE``) when it is imported: every scenario that loads
through ``transformers`` runs in its own subprocess with ``HF_ENDPOINT`` / ``HF_HOME`` in its environment. Pushes run
in this process with ``huggingface_hub.constants.ENDPOINT`` patched, which is reliable because a push only goes
through ``HfApi`` and ``HfApi`` reads the endpoint when it is built. The server runs in this process and records
every request it gets.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from hub_server import DEFAULT_GITATTRIBUTES, HubServer, git_object_id, point_clients_at
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants, hf_hub_download
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors.torch import load_file, save_file

from a2gen_hf import A2GenActionTokenizer, A2GenConfig, A2GenForActionGeneration
from a2gen_hf.cli import main as cli_main
from a2gen_hf.hub import HubPushError, build_model_card, eval_results_from_metrics, push_checkpoint
from a2gen_hf.metrics import compute_action_metrics
from a2gen_hf.output_folders import strict_json

# huggingface_hub's own LFS upload passes raw bytes as `data=`, which httpx2 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

EVAL_RESULTS = {"auc": {"like": 0.71, "follow": 0.73}, "mae": {"like": 0.52, "leave": 0.44}}
SUBPROCESS_TIMEOUT = 120
PUSHED_FILES = {
    ".gitattributes", "README.md", "config.json", "generation_config.json", "model.safetensors",
    "tokenizer_config.json", "vocab.json", "configuration_a2gen.py", "modeling_a2gen.py", "generation_a2gen.py",
    "tokenization_a2gen.py", "time_encoding.py", "features_a2gen.py", "targets.py",
}
PUSHED_FILES |= {"strict_loading.py"}  # the strict from_pretrained travels with the modeling code
PUSHED_FILES |= {"attention_kernels.py"}  # modeling_a2gen's pooled short-attention kernel

# Runs first in every client subprocess: quiet, deterministic (one thread: bit-identical sums), and, with
# ISOLATE=1, without a2gen_hf: the editable install puts src/ on sys.path (or an __editable__ finder on
# sys.meta_path); both are removed so only the code pushed with the checkpoint can define A2Gen.
PRELUDE = """
import json, os, sys
if os.environ.get("ISOLATE") == "1":
    sys.path[:] = [p for p in sys.path
                   if "__editable__" not in p and not os.path.isfile(os.path.join(p, "a2gen_hf", "__init__.py"))]
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    try:
        import a2gen_hf
    except ModuleNotFoundError:
        print("ISOLATED: a2gen_hf is not importable")
    else:
        raise SystemExit(f"a2gen_hf is still importable from {a2gen_hf.__file__}")
import torch
torch.set_num_threads(1)
from safetensors.torch import load_file, save_file
work = sys.argv[1]
"""


def tensors(output) -> dict[str, torch.Tensor]:
    """The tensors of a model output, ready for safetensors."""
    return {key: value.contiguous() for key, value in output.items() if isinstance(value, torch.Tensor)}


def tokenizer_probe(tokenizer) -> dict:
    """What the tokenizer makes of a timeline and of raw ids: must not change across a push."""
    return {"encoded": tokenizer.encode_timeline([("start", 0.0), ("like", 2.0), ("leave", 18.0)]),
            "item": tokenizer.hash_item("item-42"), "user": tokenizer.hash_user("user-7")}


# The client subprocesses use the very same helpers.
HELPERS = inspect.getsource(tensors) + "\n" + inspect.getsource(tokenizer_probe)

LOAD_SCRIPT = """
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
repo_id, tag = sys.argv[2], sys.argv[3]
batch = load_file(os.path.join(work, "batch.safetensors"))
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(repo_id, trust_remote_code=True).eval()
encoder = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
with torch.no_grad():
    save_file(tensors(model(**batch)), os.path.join(work, f"{tag}_model.safetensors"))
    save_file(tensors(encoder(**batch)), os.path.join(work, f"{tag}_encoder.safetensors"))
json.dump(tokenizer_probe(tokenizer), open(os.path.join(work, f"{tag}_tokenizer.json"), "w"))
print("CLASSES", json.dumps({type(obj).__name__: type(obj).__module__ for obj in (tokenizer, model, encoder)}))
from huggingface_hub import snapshot_download
snapshot = snapshot_download(repo_id)
print("SNAPSHOT", json.dumps({"commit": os.path.basename(snapshot), "files": sorted(os.listdir(snapshot))}))
"""

def run_client(script: str, work: Path, *args: str, env: dict[str, str], isolate: bool = False):
    """Run PRELUDE + ``script`` in a fresh interpreter (``-I``: no cwd, no PYTHONPATH) with ``env`` added."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    full_env.update(HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                    TOKENIZERS_PARALLELISM="false", ISOLATE="1" if isolate else "0", **env)
    result = subprocess.run(
        [sys.executable, "-I", "-c", PRELUDE + HELPERS + script, str(work), *args],
        env=full_env, cwd=work, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.returncode == 0, f"client failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr}"
    return result


def marked_json(stdout: str, marker: str) -> dict:
    line = next(line for line in stdout.splitlines() if line.startswith(marker + " "))
    return json.loads(line[len(marker) + 1:])


def assert_same_tensors(expected_file: Path, actual_file: Path) -> None:
    expected, actual = load_file(expected_file), load_file(actual_file)
    assert expected.keys() == actual.keys() and expected
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs between {expected_file} and {actual_file}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("hub-storage")) as server:
        yield server


@pytest.fixture(scope="module")
def api(hub) -> HfApi:
    return HfApi(endpoint=hub.url, token=hub.token)


@pytest.fixture
def hub_env(hub, monkeypatch):
    """This process's HfApi talks to the test server (pushes, and a push's read of the repo's card; transformers'
    downloads need a subprocess)."""
    point_clients_at(hub, monkeypatch)
    return hub


def tiny_config(**overrides) -> A2GenConfig:
    sizes = dict(hidden_size=8, num_attention_heads=2, id_embedding_size=8, action_embedding_size=4,
                 time_embedding_size=4, max_history_items=4, max_events_per_item=3, max_actions=3, user_buckets=50,
                 item_buckets=50, side_feature_buckets=10)
    return A2GenConfig(**{**sizes, **overrides})


def tiny_tokenizer(config: A2GenConfig) -> A2GenActionTokenizer:
    """The tokenizer of ``config`` (its actions, time statistics and buckets): a push refuses any other."""
    return A2GenActionTokenizer.from_config(config)


def tiny_batch(config: A2GenConfig) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    batch, items, events = 2, config.max_history_items, config.max_events_per_item
    history_action_ids = torch.randint(1, config.vocab_size, (batch, items, events), generator=generator)
    history_action_ids[0, -1] = 0  # a padding history item
    return {
        "user_ids": torch.tensor([3, 17]),
        "item_ids": torch.tensor([5, 41]),
        "history_item_ids": torch.tensor([[4, 9, 11, 0], [1, 2, 3, 8]]),
        "history_action_ids": history_action_ids,
        "history_action_times": torch.rand((batch, items, events), generator=generator),
    }


# --- the server, through huggingface_hub in this process (endpoint passed explicitly) -------------------------------


def test_server_commits_have_git_ids_and_serve_files(hub, api, tmp_path, monkeypatch):
    repo_id = api.create_repo("server-basics").repo_id
    assert repo_id == f"{hub.user}/server-basics"
    initial = api.model_info(repo_id).sha
    # The initial commit holds the Hub's .gitattributes; its blob id is git's.
    assert hub.file_entries(repo_id)[".gitattributes"]["oid"] == git_object_id("blob", DEFAULT_GITATTRIBUTES.encode())

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # legacy LFS: this server has no Xet storage
    weights = os.urandom(2048)
    commit = api.create_commit(
        repo_id,
        operations=[CommitOperationAdd("notes/readme.txt", b"hello hub\n"), CommitOperationAdd("w.bin", weights)],
        commit_message="add files",
    )
    assert commit.oid != initial and len(commit.oid) == 40
    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == commit.oid
    siblings = {sibling.rfilename: sibling for sibling in info.siblings}
    assert set(siblings) == {".gitattributes", "notes/readme.txt", "w.bin"}
    assert siblings["notes/readme.txt"].lfs is None  # small text file: the regular (inline base64) path
    assert siblings["w.bin"].lfs.size == 2048  # *.bin matches .gitattributes: the LFS batch path

    tree = {entry.path: entry for entry in api.list_repo_tree(repo_id, recursive=True)}
    assert set(tree) == {".gitattributes", "notes", "notes/readme.txt", "w.bin"}
    assert tree["notes/readme.txt"].blob_id == git_object_id("blob", b"hello hub\n")
    assert [c.commit_id for c in api.list_repo_commits(repo_id)] == [commit.oid, initial]
    assert [p.path for p in api.get_paths_info(repo_id, ["w.bin", "notes", "missing"])] == ["w.bin", "notes"]

    cache = tmp_path / "cache"
    text = hf_hub_download(repo_id, "notes/readme.txt", endpoint=hub.url, cache_dir=cache)
    blob = hf_hub_download(repo_id, "w.bin", endpoint=hub.url, cache_dir=cache, revision=commit.oid)
    assert Path(text).read_bytes() == b"hello hub\n" and Path(blob).read_bytes() == weights
    # The LFS download went to the "CDN" origin, and the client did not send it the token.
    cdn_requests = [r for r in hub.requests if r.listener == "cdn"]
    assert any(r.method == "GET" for r in cdn_requests) and all(r.authorization is None for r in cdn_requests)

    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", endpoint=hub.url, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="no-such-branch")


def test_server_auth_and_private_repos(hub, api):
    anonymous = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(Exception, match="401"):
        anonymous.create_repo("not-allowed")
    with pytest.raises(Exception, match="Invalid credentials"):
        HfApi(endpoint=hub.url, token="hf_wrong").create_repo("not-allowed")
    repo_id = api.create_repo("secret", private=True).repo_id
    assert api.model_info(repo_id).private
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(repo_id)
    # An existing repo answers 409, which exist_ok turns into success.
    assert api.create_repo("secret", exist_ok=True).repo_id == repo_id


def test_server_rejects_invalid_card_metadata(hub):
    request = urllib.request.Request(
        f"{hub.url}/api/validate-yaml", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"content": "---\nmodel-index:\n- results: []\n---\ntext", "repoType": "model"}).encode(),
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request)
    assert error.value.code == 400 and "name" in json.loads(error.value.read())["errors"][0]["message"]


# --- model card ------------------------------------------------------------------------------------------------------


def test_model_card_metadata_and_prose():
    config = tiny_config()
    model = A2GenForActionGeneration(config)
    card = build_model_card(model, tiny_tokenizer(config), eval_results=EVAL_RESULTS,
                            dataset_name="simulated-short-video", repo_id="someone/a2gen-sim")
    reloaded = ModelCard(str(card))  # what the Hub parses back from README.md
    data = reloaded.data
    assert data.library_name == "transformers"
    assert {"recommendation", "a2gen", "action-generation", "iag"} <= set(data.tags)
    assert data.datasets == ["simulated-short-video"]
    assert data.a2gen["action_names"] == config.action_names and data.a2gen["generator"] == "iag"
    assert data.model_name == "a2gen-sim"
    metrics = {(r.metric_type, r.metric_name): r.metric_value for r in data.eval_results}
    assert metrics == {("auc", "AUC (like)"): 0.71, ("auc", "AUC (follow)"): 0.73,
                       ("mae", "Time MAE (like)"): 0.52, ("mae", "Time MAE (leave)"): 0.44}
    assert all(r.dataset_name == "simulated-short-video" and r.dataset_split == "test" for r in data.eval_results)
    text = reloaded.text
    for needle in ("## Intended use", "## Limitations", 'from_pretrained("someone/a2gen-sim", trust_remote_code=True)',
                   "| AUC (like) | 0.7100 |", "simulated data"):
        assert needle in text


def test_model_card_without_results_says_so():
    model = A2GenForActionGeneration(tiny_config(generator_type="eag"))
    card = build_model_card(model)
    assert card.data.eval_results is None and "eag" in card.data.tags
    assert "No evaluation results" in card.text and "not recorded" in card.text


def test_model_card_names_the_input_options_and_what_a_request_needs():
    """A checkpoint of the sparse-log options says what it reads and what every request must carry (before: the
    card spoke of ids and timed histories only, and of untrained id embeddings for an id-free model)."""
    plain = build_model_card(A2GenForActionGeneration(tiny_config())).text
    assert "| history times |" not in plain and "map to untrained embeddings" in plain
    config = tiny_config(use_id_embeddings=False, history_count_features=True, history_time_features=True,
                         target_popularity_features=True, wide_path=True)
    text = build_model_card(A2GenForActionGeneration(config)).text
    for needle in ("| user / item ids | not read (id-free)", "| count features |", "| history times |",
                   "every request needs its time and each history item's session start", "| popularity features |",
                   "| wide path |", "encode_histories(..., now=...)", "User and item ids are not read (id-free)"):
        assert needle in text, needle
    assert "map to untrained embeddings" not in text


@pytest.mark.parametrize(
    ("eval_results", "dataset_name", "message"),
    [
        ({"auc": {"dance": 0.5}}, "sim", r"action 'dance'.*allowed actions: \['start', 'like'"),
        ({"auc": {"like": float("nan")}}, "sim", r"eval_results\['auc'\]\['like'\] = nan is not a finite number"),
        ({"loss": "low"}, "sim", r"eval_results\['loss'\] = 'low' is not a finite number"),
        ({"auc": {"like": 0.5}}, None, "without dataset_name"),
        ({"auc": {"like": 71.0}}, "sim", r"eval_results\['auc'\]\['like'\] = 71.0: auc lies in \[0, 1\]; a percentage\?"),
    ],
)
def test_model_card_rejects_bad_eval_results(eval_results, dataset_name, message):
    model = A2GenForActionGeneration(tiny_config())
    with pytest.raises(ValueError, match=message):
        build_model_card(model, eval_results=eval_results, dataset_name=dataset_name)


def metrics_file_text(config: A2GenConfig, written_by: str) -> str:
    """A metrics file as `a2gen train` (NaN -> null) or `a2gen evaluate --json` (NaN kept) writes it: four examples
    in which `comment` never happens, so its AUC and MAE are undefined."""
    ids = {name: index + 1 for index, name in enumerate(config.action_names)}
    sequences = [["start", "like", "leave"], ["start", "follow", "leave"], ["start", "like", "forward", "leave"],
                 ["start", "leave"]]
    labels = torch.tensor([[ids[name] for name in names] + [0] * (4 - len(names)) for names in sequences])
    generator = torch.Generator().manual_seed(0)
    metrics = compute_action_metrics(
        {"action_probabilities": torch.rand((4, config.vocab_size), generator=generator),
         "expected_times": torch.rand((4, config.vocab_size), generator=generator)},
        {"labels": labels, "label_times": torch.rand(labels.shape, generator=generator), "label_time_mask": labels != 0},
        config.action_names, config.start_action, config.end_action,
    )
    if written_by == "train":
        return json.dumps(strict_json(metrics))
    return json.dumps(metrics, default=float)


@pytest.mark.parametrize("written_by", ["train", "evaluate"])
def test_eval_results_from_a_metrics_file_keep_defined_auc_and_mae(written_by):
    config = tiny_config()
    metrics = json.loads(metrics_file_text(config, written_by))
    eval_results, notes = eval_results_from_metrics(metrics)
    assert set(eval_results) == {"auc", "mae"}
    assert set(eval_results["auc"]) == {"like", "follow", "forward"}
    assert set(eval_results["mae"]) == {"like", "follow", "forward", "leave"}
    assert eval_results["auc"]["like"] == metrics["auc"]["like"]
    undefined = "null" if written_by == "train" else "NaN"
    assert notes[0] == (f"auc[comment] is undefined ({undefined}) and is left off the model card "
                        "(auc[comment]: AUC undefined (NaN), 0 of 4 examples are positive).")
    assert notes[1].startswith(f"mae[comment] is undefined ({undefined}) and is left off the model card (mae[comment]:")
    assert notes[2].startswith("Only the per-action auc and mae tables go on the model card; not shown: ")
    assert "mean_auc" in notes[2] and "notes" in notes[2] and len(notes) == 3
    card = build_model_card(A2GenForActionGeneration(config), eval_results=eval_results, dataset_name="sim")
    assert len(card.data.eval_results) == 7


def test_eval_results_from_metrics_takes_the_short_form_and_rejects_others():
    assert eval_results_from_metrics(EVAL_RESULTS) == (EVAL_RESULTS, [])
    assert eval_results_from_metrics({"auc": {"like": None}, "mae": 0.5}) == (
        {"mae": 0.5}, ["auc[like] is undefined (null) and is left off the model card."]
    )
    with pytest.raises(ValueError, match=r"no auc or mae entry \(their keys: \['loss'\]\)"):
        eval_results_from_metrics({"loss": 0.3})
    with pytest.raises(ValueError, match="must be a JSON object"):
        eval_results_from_metrics([0.7])


def test_push_rejects_tokenizer_of_another_vocabulary_or_other_buckets():
    """Before the repository is created: other actions, and (before: pushed) other bucket counts or max_actions,
    which would hash ids into other rows than the model's."""
    config = tiny_config()
    other = tiny_tokenizer(tiny_config(action_names=["click", "buy", "leave"], start_action="click"))
    with pytest.raises(HubPushError, match=r"action_names: tokenizer has \['click', 'buy', 'leave'\]"):
        push_checkpoint(A2GenForActionGeneration(config), "unused/repo", tokenizer=other, token="unused")
    for field, value in (("user_buckets", 999), ("item_buckets", 7), ("max_actions", config.max_actions + 1)):
        tokenizer = tiny_tokenizer(config)
        setattr(tokenizer, field, value)
        with pytest.raises(HubPushError, match=rf"(?s){field}: tokenizer has {value}.*Nothing was pushed"):
            push_checkpoint(A2GenForActionGeneration(config), "unused/repo", tokenizer=tokenizer, token="unused")


@pytest.mark.parametrize("arguments, message", [
    (dict(repo_id=None), r"repo_id=None must be a repository id"),
    (dict(repo_id="org/x", tokenizer="tokenizer/"), r"tokenizer is a str; give the A2GenActionTokenizer"),
    (dict(repo_id="org/x", eval_results="results.json"), r"eval_results is a str; give a dict"),
])  # fmt: skip
def test_push_names_arguments_of_the_wrong_kind(arguments, message):
    """Before: a TypeError from inside huggingface_hub, AttributeErrors from the card or the tokenizer check."""
    with pytest.raises(HubPushError, match=message):
        push_checkpoint(A2GenForActionGeneration(tiny_config()), token="unused", **arguments)
    with pytest.raises(HubPushError, match=r"checkpoint_dir_or_model is a dict; give an A2Gen, MMoE or PLE model"):
        push_checkpoint({}, "org/x", token="unused")


def test_push_rejects_folder_without_config(tmp_path):
    with pytest.raises(HubPushError, match="has no config.json"):
        push_checkpoint(tmp_path, "unused/repo", token="unused")


# --- A2Gen end to end: push, load with remote code only, load offline ------------------------------------------------


def save_outputs(model: A2GenForActionGeneration, batch: dict[str, torch.Tensor], folder: Path) -> None:
    """The model's and its encoder's outputs, computed on one thread as the client subprocesses compute them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            save_file(tensors(model(**batch)), folder / "original_model.safetensors")
            save_file(tensors(model.a2gen(**batch)), folder / "original_encoder.safetensors")
    finally:
        torch.set_num_threads(threads)


def test_push_checkpoint_then_load_with_remote_code_and_offline(hub_env, tmp_path, capfd, monkeypatch):
    hub = hub_env
    config = tiny_config()
    torch.manual_seed(0)
    model = A2GenForActionGeneration(config).eval()
    tokenizer = tiny_tokenizer(config)
    batch = tiny_batch(config)
    save_file(batch, tmp_path / "batch.safetensors")
    save_outputs(model, batch, tmp_path)
    original_tokenizer = tokenizer_probe(tokenizer)

    # Push with an explicit token (none in the environment): it must not leak into the output or the pushed files.
    monkeypatch.delenv("HF_TOKEN")
    commit = push_checkpoint(model, "a2gen-sim", tokenizer=tokenizer, eval_results=EVAL_RESULTS,
                             dataset_name="simulated-short-video", token=hub.token)
    out, err = capfd.readouterr()
    repo_id = commit.repo_url.repo_id
    assert repo_id == f"{hub.user}/a2gen-sim"
    assert hub.token not in out + err
    files = hub.files(repo_id)
    assert all(hub.token.encode() not in content for content in files.values())

    # One commit with model, tokenizer, card and code.
    commits = HfApi(endpoint=hub.url).list_repo_commits(repo_id)
    assert [c.commit_id for c in commits][0] == commit.oid and len(commits) == 2
    assert set(files) == PUSHED_FILES
    assert hub.file_entries(repo_id)["model.safetensors"].get("lfs")
    auto_map = json.loads(files["config.json"])["auto_map"]
    assert auto_map == {"AutoConfig": "configuration_a2gen.A2GenConfig", "AutoModel": "modeling_a2gen.A2GenModel",
                        "AutoModelForCausalLM": "modeling_a2gen.A2GenForActionGeneration"}
    assert json.loads(files["tokenizer_config.json"])["auto_map"]["AutoTokenizer"][0] == (
        "tokenization_a2gen.A2GenActionTokenizer")
    card = ModelCard(files["README.md"].decode())
    assert card.data.datasets == ["simulated-short-video"] and len(card.data.eval_results) == 4

    # A process that cannot import a2gen_hf loads everything through the server with the pushed code.
    home = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "pull-home")}
    remote = run_client(LOAD_SCRIPT, tmp_path, repo_id, "remote", env=home, isolate=True)
    assert "ISOLATED: a2gen_hf is not importable" in remote.stdout
    classes = marked_json(remote.stdout, "CLASSES")
    assert set(classes) == {"A2GenActionTokenizer", "A2GenForActionGeneration", "A2GenModel"}
    assert all(module.startswith("transformers_modules.") for module in classes.values())
    for part in ("model", "encoder"):
        assert_same_tensors(tmp_path / f"original_{part}.safetensors", tmp_path / f"remote_{part}.safetensors")
    assert json.loads((tmp_path / "remote_tokenizer.json").read_text()) == original_tokenizer
    # snapshot_download fetches the whole commit into a folder named by its id.
    assert marked_json(remote.stdout, "SNAPSHOT") == {"commit": commit.oid, "files": sorted(files)}

    # Offline, from the cache of the previous process: same outputs, and not one request reaches the server.
    requests_before = len(hub.requests)
    offline = run_client(LOAD_SCRIPT, tmp_path, repo_id, "offline", env={**home, "HF_HUB_OFFLINE": "1"}, isolate=True)
    assert "ISOLATED" in offline.stdout and len(hub.requests) == requests_before
    for part in ("model", "encoder"):
        assert_same_tensors(tmp_path / f"original_{part}.safetensors", tmp_path / f"offline_{part}.safetensors")
    assert json.loads((tmp_path / "offline_tokenizer.json").read_text()) == original_tokenizer
    assert marked_json(offline.stdout, "SNAPSHOT") == {"commit": commit.oid, "files": sorted(files)}


# --- the `a2gen push` command ------------------------------------------------------------------------------------------


def test_cli_push(hub_env, tmp_path, capfd):
    config = tiny_config(generator_type="eag")
    checkpoint = tmp_path / "checkpoint"
    A2GenForActionGeneration(config).save_pretrained(checkpoint)
    tiny_tokenizer(config).save_pretrained(checkpoint / "tokenizer")
    (checkpoint / "optimizer.pt").write_bytes(b"training state that must stay local")
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps({"auc": {"like": 0.7}}))

    code = cli_main(["push", str(checkpoint), "cli-push", "--private", "--dataset-name", "sim",
                     "--eval-results", str(results_file), "--commit-message", "first push", "--license", "other"])
    out, err = capfd.readouterr()
    assert code == 0, err
    repo_id = f"{hub_env.user}/cli-push"
    commit = HfApi(endpoint=hub_env.url, token=hub_env.token).list_repo_commits(repo_id)[0]
    assert f"pushed {checkpoint} to {repo_id} as commit {commit.commit_id}" in out and commit.title == "first push"
    assert hub_env.token not in out + err
    files = hub_env.files(repo_id)
    assert set(files) == PUSHED_FILES  # the tokenizer from tokenizer/; optimizer.pt stays local
    assert ModelCard(files["README.md"].decode()).data.eval_results[0].metric_value == 0.7
    assert ModelCard(files["README.md"].decode()).data.license == "other"
    with pytest.raises(RepositoryNotFoundError):  # --private: anonymous readers do not see it
        HfApi(endpoint=hub_env.url, token=False).model_info(repo_id)


def test_cli_push_to_a_branch_and_as_a_pull_request(hub_env, tmp_path, capfd):
    config = tiny_config()
    checkpoint = tmp_path / "checkpoint"
    A2GenForActionGeneration(config).save_pretrained(checkpoint)
    tiny_tokenizer(config).save_pretrained(checkpoint)
    assert cli_main(["push", str(checkpoint), "cli-branch"]) == 0
    capfd.readouterr()
    A2GenForActionGeneration(config).save_pretrained(checkpoint)  # new weights: the branch gets a commit of its own
    code = cli_main(["push", str(checkpoint), "cli-branch", "--revision", "v2", "--commit-message", "to v2"])
    out, err = capfd.readouterr()
    assert code == 0, err
    repo_id = f"{hub_env.user}/cli-branch"
    api = HfApi(endpoint=hub_env.url, token=hub_env.token)
    assert api.list_repo_commits(repo_id, revision="v2")[0].title == "to v2"
    assert api.list_repo_commits(repo_id)[0].title != "to v2"  # main untouched
    assert " on v2 as commit " in out and set(hub_env.files(repo_id, revision="v2")) == PUSHED_FILES
    # --create-pr reaches the Hub: the test server refuses pull requests, so the request must have carried it
    assert cli_main(["push", str(checkpoint), "cli-branch", "--create-pr"]) == 2
    assert "does not support pull requests" in capfd.readouterr().err


def test_cli_push_of_nothing_new_as_a_pull_request_says_so(hub_env, tmp_path, capfd, monkeypatch):
    """From a probe: the same folder pushed again with --create-pr printed "pushed ... as commit <main's commit>",
    although huggingface_hub skipped the empty commit and opened no pull request. The push also removes the work
    folders of pushes killed by a signal (a model-sized copy each, under the system's temporary folder)."""
    config = tiny_config()
    checkpoint = tmp_path / "checkpoint"
    A2GenForActionGeneration(config).save_pretrained(checkpoint)
    tiny_tokenizer(config).save_pretrained(checkpoint)
    assert cli_main(["push", str(checkpoint), "cli-unchanged"]) == 0
    head = HfApi(endpoint=hub_env.url, token=hub_env.token).list_repo_commits(f"{hub_env.user}/cli-unchanged")[0]
    capfd.readouterr()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (temporary / f"a2gen-push-{dead.pid}_killed").mkdir()
    assert cli_main(["push", str(checkpoint), "cli-unchanged", "--create-pr"]) == 0
    out, err = capfd.readouterr()
    expected = (f"nothing changed: {hub_env.user}/cli-unchanged already holds these files (commit {head.commit_id}), "
                "so no commit and no pull request were made")
    assert expected in out, out + err
    assert "pushed" not in out
    assert list(temporary.iterdir()) == []  # the killed push's folder, and this push's own


def test_a_push_of_nothing_new_says_no_commit_was_made(hub_env, tmp_path, capfd):
    """From earlier notes: the same folder pushed again (no --create-pr) printed "pushed ... as commit <the head>",
    as if a commit had been made; huggingface_hub had skipped it. A push that changes a file is still a commit."""
    from a2gen_hf.hub import push_checkpoint, pushed_nothing

    config = tiny_config()
    checkpoint = tmp_path / "checkpoint"
    A2GenForActionGeneration(config).save_pretrained(checkpoint)
    tiny_tokenizer(config).save_pretrained(checkpoint)
    assert cli_main(["push", str(checkpoint), "cli-same"]) == 0
    api = HfApi(endpoint=hub_env.url, token=hub_env.token)
    repo_id = f"{hub_env.user}/cli-same"
    head = api.list_repo_commits(repo_id)[0].commit_id
    assert " as commit " in capfd.readouterr().out
    assert cli_main(["push", str(checkpoint), "cli-same"]) == 0
    out = capfd.readouterr().out
    assert f"nothing changed: {repo_id} already holds these files (commit {head}), so no commit was made" in out
    assert "pushed" not in out and api.list_repo_commits(repo_id)[0].commit_id == head
    assert pushed_nothing(push_checkpoint(checkpoint, "cli-same"))
    A2GenForActionGeneration(config).save_pretrained(checkpoint)  # freshly drawn weights: a new commit
    commit = push_checkpoint(checkpoint, "cli-same")
    assert not pushed_nothing(commit) and commit.oid != head == api.list_repo_commits(repo_id)[1].commit_id


def test_cli_push_takes_the_eval_results_of_a2gen_train(hub_env, tmp_path, capfd):
    config = tiny_config()
    checkpoint = tmp_path / "checkpoint"
    A2GenForActionGeneration(config).save_pretrained(checkpoint)
    tiny_tokenizer(config).save_pretrained(checkpoint)
    results_file = tmp_path / "eval_results.json"
    results_file.write_text(metrics_file_text(config, "train"))

    code = cli_main(["push", str(checkpoint), "cli-push-metrics", "--dataset-name", "sim",
                     "--eval-results", str(results_file)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert f"a2gen push: note: {results_file}: auc[comment] is undefined (null) and is left off the model card" in err
    assert "note:" not in out  # messages on stderr, results on stdout
    card = ModelCard(hub_env.files(f"{hub_env.user}/cli-push-metrics")["README.md"].decode())
    assert {result.metric_name for result in card.data.eval_results} == {
        "AUC (like)", "AUC (follow)", "AUC (forward)",
        "Time MAE (like)", "Time MAE (follow)", "Time MAE (forward)", "Time MAE (leave)",
    }


def test_cli_push_reports_bad_input(hub_env, tmp_path, capfd):
    checkpoint = tmp_path / "checkpoint"
    A2GenForActionGeneration(tiny_config()).save_pretrained(checkpoint)
    tiny_tokenizer(tiny_config()).save_pretrained(checkpoint)
    bad_results = tmp_path / "results.json"
    bad_results.write_text('{"auc": {"like": 0.7,}}')
    assert cli_main(["push", str(checkpoint), "cli-bad", "--eval-results", str(bad_results), "--dataset-name", "sim"]) == 2
    assert f"a2gen push: error: {bad_results}, line 1, column 22" in capfd.readouterr().err
    assert cli_main(["push", str(tmp_path / "missing"), "cli-bad"]) == 2
    assert f"The checkpoint folder {tmp_path / 'missing'} does not exist." in capfd.readouterr().err
    bad_results.write_text('{"loss": 0.3}')
    assert cli_main(["push", str(checkpoint), "cli-bad", "--eval-results", str(bad_results), "--dataset-name", "sim"]) == 2
    assert f"a2gen push: error: {bad_results}: The metrics have no auc or mae entry" in capfd.readouterr().err
    bad_results.write_text('{"auc": {"like": 0.7}}')
    assert cli_main(["push", str(checkpoint), "cli-bad-no-dataset", "--eval-results", str(bad_results)]) == 2
    assert "--eval-results needs --dataset-name, the data set" in capfd.readouterr().err  # by flag, before reading
    with pytest.raises(RepositoryNotFoundError):  # refused before the repo was created
        HfApi(endpoint=hub_env.url, token=hub_env.token).model_info(f"{hub_env.user}/cli-bad-no-dataset")


# --- every entry point writes the A2Gen card: model.push_to_hub, A2GenTrainer.push_to_hub; MMoE / PLE remote code ----


def card_of(hub, repo_id: str) -> ModelCard:
    return ModelCard(hub.files(repo_id)["README.md"].decode())


def test_model_push_to_hub_writes_the_a2gen_card(hub_env, tmp_path):
    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    metrics = json.loads(metrics_file_text(config, "evaluate"))  # a whole result: counts, notes, other tables
    url = model.push_to_hub("model-push", tokenizer=tiny_tokenizer(config), eval_results=metrics,
                            dataset_name="simulated-short-video", commit_message="via push_to_hub")
    repo_id = f"{hub_env.user}/model-push"
    assert url.repo_url.repo_id == repo_id
    files = hub_env.files(repo_id)
    assert set(files) == PUSHED_FILES  # model, tokenizer, code and card in one commit
    card = card_of(hub_env, repo_id)
    assert {"a2gen", "action-generation", "iag", "custom_code"} <= set(card.data.tags)
    assert card.data.datasets == ["simulated-short-video"]
    names = {result.metric_name for result in card.data.eval_results}
    assert "AUC (like)" in names and "Time MAE (leave)" in names
    assert not [name for name in names if "positives" in name or "count" in name]
    assert "An **A2Gen**" in card.text and "This model card has been automatically generated" not in card.text


def test_push_to_a_new_branch_creates_it_from_main(hub_env):
    """As transformers' push_to_hub: before, a revision that was no branch yet failed with a raw 404."""
    from a2gen_hf.hub import push_checkpoint

    config = tiny_config()
    model = A2GenForActionGeneration(config).eval()
    push_checkpoint(model, "branched", tokenizer=tiny_tokenizer(config))
    model.push_to_hub("branched", tokenizer=tiny_tokenizer(config), revision="v2", commit_message="to v2")
    repo_id = f"{hub_env.user}/branched"
    assert set(hub_env.files(repo_id, revision="v2")) == PUSHED_FILES == set(hub_env.files(repo_id))
    push_checkpoint(model, "branched", tokenizer=tiny_tokenizer(config), revision="v2", license="cc-by-nc-4.0")
    assert card_of(hub_env, repo_id).data.license == "apache-2.0"  # main as it was
    card = ModelCard(hub_env.files(repo_id, revision="v2")["README.md"].decode())
    assert card.data.license == "cc-by-nc-4.0"  # before: apache-2.0 whatever the data's terms
    with pytest.raises(HubPushError, match=r"license='cc by' must be a Hub license id"):
        push_checkpoint(model, "branched", tokenizer=tiny_tokenizer(config), license="cc by")


def test_a_re_push_replaces_its_own_card_but_keeps_an_edited_one(hub_env, caplog):
    """As transformers' push_to_hub keeps an existing card: a card a person edited or wrote survives a re-push (the
    model files change), unless replace_card; the package's own unedited card follows the new checkpoint."""
    from a2gen_hf.hub import card_is_generated

    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    api = HfApi(endpoint=hub_env.url, token=hub_env.token)
    repo_id = f"{hub_env.user}/re-pushed"
    push_checkpoint(model, "re-pushed", tokenizer=tokenizer)
    generated = hub_env.files(repo_id)["README.md"].decode()
    assert card_is_generated(generated) and not card_is_generated(generated.replace("A2Gen", "A2-Gen", 1))
    assert card_is_generated(generated.replace("\n", "\r\n"))  # as an editor or a Windows checkout may write it
    push_checkpoint(model, "re-pushed", tokenizer=tokenizer, license="other")  # unedited: replaced
    assert card_of(hub_env, repo_id).data.license == "other"

    edited = hub_env.files(repo_id)["README.md"].decode().replace("## Citation", "## Our A/B test\n\n+0.3 %.\n\n## Citation")
    api.upload_file(path_or_fileobj=edited.encode(), path_in_repo="README.md", repo_id=repo_id)
    with torch.no_grad():
        weight_name, weight = next((name, value) for name, value in model.named_parameters() if "user_embeddings" in name)
        weight.add_(1.0)  # a new checkpoint
    with caplog.at_level("WARNING", logger="a2gen_hf.hub"):
        push_checkpoint(model, "re-pushed", tokenizer=tokenizer, license="cc-by-nc-4.0")
    files = hub_env.files(repo_id)
    assert files["README.md"].decode() == edited  # kept
    assert "edited or written by hand: it is kept" in caplog.text and "--replace-card" in caplog.text
    from safetensors.torch import load as load_bytes

    pushed = load_bytes(files["model.safetensors"])  # the new weights went up
    assert torch.equal(pushed[weight_name], weight)
    model.push_to_hub("re-pushed", tokenizer=tokenizer, replace_card=True)
    replaced = hub_env.files(repo_id)["README.md"].decode()
    assert card_is_generated(replaced) and "Our A/B test" not in replaced

    api.create_repo("hand-written")
    api.upload_file(path_or_fileobj=b"# Our model\n", path_in_repo="README.md", repo_id=f"{hub_env.user}/hand-written")
    push_checkpoint(model, "hand-written", tokenizer=tokenizer)
    files = hub_env.files(f"{hub_env.user}/hand-written")
    assert files["README.md"] == b"# Our model\n" and set(files) == PUSHED_FILES
    with pytest.raises(HubPushError, match=r"replace_card='yes' must be True or False"):
        push_checkpoint(model, "hand-written", tokenizer=tokenizer, replace_card="yes")


def baseline_model(kind: str):
    from a2gen_hf import MMoEConfig, MMoEForActionPrediction, PLEConfig, PLEForActionPrediction

    config_class, model_class = {"mmoe": (MMoEConfig, MMoEForActionPrediction),
                                 "ple": (PLEConfig, PLEForActionPrediction)}[kind]
    base = tiny_config()
    sizes = {key: getattr(base, key) for key in ("id_embedding_size", "action_embedding_size", "time_embedding_size",
                                                  "max_history_items", "max_events_per_item", "max_actions",
                                                  "user_buckets", "item_buckets", "side_feature_buckets")}
    torch.manual_seed(0)
    return model_class(config_class(**sizes)).eval()


BASELINE_LOAD_SCRIPT = """
from transformers import AutoModel, AutoTokenizer
repo_id = sys.argv[2]
batch = load_file(os.path.join(work, "batch.safetensors"))
model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
with torch.no_grad():
    save_file(tensors(model(**batch)), os.path.join(work, "remote_model.safetensors"))
print("CLASSES", json.dumps({type(obj).__name__: type(obj).__module__ for obj in (model, tokenizer)}))
"""


@pytest.mark.parametrize("kind", ["mmoe", "ple"])
def test_baselines_push_and_load_with_remote_code(hub_env, tmp_path, kind):
    model = baseline_model(kind)
    batch = tiny_batch(model.config)
    save_file(batch, tmp_path / "batch.safetensors")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            save_file(tensors(model(**batch)), tmp_path / "original_model.safetensors")
    finally:
        torch.set_num_threads(threads)
    model.push_to_hub(f"{kind}-push", tokenizer=tiny_tokenizer(model.config), dataset_name="sim",
                      eval_results={"auc": {"like": 0.6}})
    repo_id = f"{hub_env.user}/{kind}-push"
    files = hub_env.files(repo_id)
    assert json.loads(files["config.json"])["auto_map"] == {
        "AutoConfig": f"configuration_baselines.{type(model.config).__name__}",
        "AutoModel": f"modeling_baselines.{type(model).__name__}",
    }
    assert {"modeling_baselines.py", "configuration_baselines.py", "modeling_a2gen.py"} <= set(files)
    card = card_of(hub_env, repo_id)
    assert {kind, "custom_code"} <= set(card.data.tags) and card.data.a2gen["architecture"] == kind
    assert f"A **{type(model).__name__.split('For')[0]}** multi-task baseline" in card.text
    assert "AutoModel.from_pretrained" in card.text and "AutoModelForCausalLM" not in card.text

    remote = run_client(BASELINE_LOAD_SCRIPT, tmp_path, repo_id, env={"HF_ENDPOINT": hub_env.url,
                                                                       "HF_HOME": str(tmp_path / "home")},
                        isolate=True)
    assert "ISOLATED: a2gen_hf is not importable" in remote.stdout
    classes = marked_json(remote.stdout, "CLASSES")
    assert set(classes) == {type(model).__name__, "A2GenActionTokenizer"}
    assert all(module.startswith("transformers_modules.") for module in classes.values())
    assert_same_tensors(tmp_path / "original_model.safetensors", tmp_path / "remote_model.safetensors")


def test_trainer_push_to_hub_writes_the_a2gen_card(hub_env, simulated_data_dir, tmp_path):
    from a2gen_hf.data import A2GenDataCollator
    from a2gen_hf.training.data_setup import create_model, load_data_dir
    from a2gen_hf.training.trainer import A2GenTrainer, a2gen_compute_metrics, a2gen_training_arguments

    dataset, tokenizer, _ = load_data_dir(simulated_data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, dataset, hidden_size=16, id_embedding_size=16)
    args = a2gen_training_arguments(str(tmp_path / "run"), per_device_eval_batch_size=64, report_to="none",
                                    disable_tqdm=True, hub_model_id="trainer-push", use_cpu=True)
    trainer = A2GenTrainer(
        model=model, args=args, train_dataset=dataset["train"], eval_dataset=dataset["validation"],
        data_collator=A2GenDataCollator.from_config(model.config, tokenizer), processing_class=tokenizer,
        compute_metrics=a2gen_compute_metrics(model.config),
    )
    metrics = trainer.evaluate()
    trainer.push_to_hub(dataset="simulated-short-video", blocking=True)
    repo_id = f"{hub_env.user}/trainer-push"
    files = hub_env.files(repo_id)
    assert {"config.json", "model.safetensors", "modeling_a2gen.py", "tokenizer_config.json"} <= set(files)
    card = card_of(hub_env, repo_id)
    assert {"a2gen", "iag", "custom_code"} <= set(card.data.tags)
    assert card.data.datasets == ["simulated-short-video"]  # not the builder's "generator"
    values = {result.metric_name: result.metric_value for result in card.data.eval_results}
    assert values["AUC (like)"] == pytest.approx(metrics["eval_auc_like"])
    assert all(result.dataset_split == "validation" for result in card.data.eval_results)
    assert not [name for name in values if "count" in name or "positives" in name or "num_examples" in name]


@pytest.mark.parametrize("failure", ["offline", "unreachable", "401"])
def test_cli_push_hub_failures_are_one_line_with_status_2(hub_env, tmp_path, capfd, monkeypatch, failure):
    checkpoint = tmp_path / "checkpoint"
    A2GenForActionGeneration(tiny_config()).save_pretrained(checkpoint)
    tiny_tokenizer(tiny_config()).save_pretrained(checkpoint)  # a push needs the tokenizer
    expected = {
        "offline": "HF_HUB_OFFLINE is set: pushing needs the network",
        "unreachable": "cannot reach the Hub at http://127.0.0.1:9",
        "401": "refused the token (401 Unauthorized): log in with `hf auth login`",
    }[failure]
    if failure == "offline":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    elif failure == "unreachable":
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    else:
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    assert cli_main(["push", str(checkpoint), f"cli-{failure}"]) == 2
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("a2gen push: error: ") and expected in errors[0], err


@pytest.mark.parametrize("kind", ["mmoe", "ple"])
def test_cli_push_of_a_saved_baseline_folder(hub_env, tmp_path, capfd, kind):
    model = baseline_model(kind)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    tiny_tokenizer(model.config).save_pretrained(checkpoint)
    code = cli_main(["push", str(checkpoint), f"cli-{kind}"])
    out, err = capfd.readouterr()
    assert code == 0, err[-2000:]
    files = hub_env.files(f"{hub_env.user}/cli-{kind}")
    assert json.loads(files["config.json"])["architectures"] == [type(model).__name__]
    assert {"modeling_baselines.py", "model.safetensors", "tokenizer_config.json"} <= set(files)


TRAIN_FROM_HUB_SCRIPT = """
from a2gen_hf.cli import main
print("EXIT", main(sys.argv[2:]))
"""


def test_cli_train_init_from_a_hub_id(hub_env, simulated_data_dir, tmp_path, capfd):
    """`a2gen train --init-from namespace/name`: a model pushed to the Hub is downloaded and trained on; its starting
    weights are the pushed ones (the second run's step-0 validation AUC is the first run's selected one)."""
    base = ["train", "--data", str(simulated_data_dir), "--select-by", "mean_auc", "--batch-size", "32",
            "--hidden-size", "16", "--id-embedding-size", "16", "--no-progress"]
    assert cli_main([*base, "--output", str(tmp_path / "first"), "--max-steps", "2", "--eval-every", "1"]) == 0
    first = json.loads((tmp_path / "first" / "training_log.json").read_text())
    best = max(entry["validation_mean_auc"] for entry in first["log_history"] if "validation_loss" in entry)
    assert cli_main(["push", str(tmp_path / "first" / "model"), "init-from"]) == 0
    capfd.readouterr()
    repo_id = f"{hub_env.user}/init-from"
    second = tmp_path / "second"
    home = {"HF_ENDPOINT": hub_env.url, "HF_HOME": str(tmp_path / "home")}
    result = run_client(TRAIN_FROM_HUB_SCRIPT, tmp_path, *base, "--output", str(second), "--init-from", repo_id,
                        "--max-steps", "1", "--eval-before-training", env=home)
    assert "EXIT 0" in result.stdout, result.stderr
    requests = [(request.method, request.path) for request in hub_env.requests]
    assert ("HEAD", f"/{repo_id}/resolve/main/model.safetensors") in requests  # the weights came from the server
    assert any(method == "GET" and path.startswith("/lfs-blob/") for method, path in requests)
    log = json.loads((second / "training_log.json").read_text())
    start = next(entry for entry in log["log_history"] if "validation_loss" in entry)
    assert start["step"] == 0 and start["validation_mean_auc"] == pytest.approx(best, abs=1e-6)
    # A Hub id that does not exist is one line on stderr with status 2, and nothing is written.
    missing = run_client(TRAIN_FROM_HUB_SCRIPT, tmp_path, *base, "--output", str(tmp_path / "missing"), "--init-from",
                         f"{hub_env.user}/no-such-model", "--max-steps", "1", env=home)
    assert "EXIT 2" in missing.stdout and not (tmp_path / "missing" / "model").exists()


def test_models_and_tokenizers_of_directly_imported_modules_save_their_auto_map(tmp_path):
    """`from a2gen_hf.modeling_a2gen import ...` imports transformers from inside the package, which skipped the
    registration: before, save_pretrained / push_to_hub wrote no auto_map and no code (the repo did not load without
    the package) and push_to_hub used transformers' generic card."""
    script = (
        "import json, sys\n"
        "from a2gen_hf.configuration_a2gen import A2GenConfig\n"
        "from a2gen_hf.modeling_a2gen import A2GenForActionGeneration, A2GenPreTrainedModel\n"
        "from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer\n"
        "folder = sys.argv[1]\n"
        "config = A2GenConfig(item_buckets=100, user_buckets=10)\n"
        "A2GenForActionGeneration(config).save_pretrained(folder)\n"
        "A2GenActionTokenizer.from_config(config).save_pretrained(folder)\n"
        "print(json.dumps([json.load(open(f'{folder}/config.json')).get('auto_map'),\n"
        "                  json.load(open(f'{folder}/tokenizer_config.json')).get('auto_map'),\n"
        "                  A2GenPreTrainedModel.hub_pusher is not None]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "saved")], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    model_map, tokenizer_map, pusher = json.loads(done.stdout.strip().splitlines()[-1])
    assert model_map["AutoModelForCausalLM"] == "modeling_a2gen.A2GenForActionGeneration"
    assert tokenizer_map["AutoTokenizer"][0] == "tokenization_a2gen.A2GenActionTokenizer" and pusher
    assert (tmp_path / "saved" / "modeling_a2gen.py").exists()


# --- messages of a push (and of the strict loader it goes through) in the terms of the folder it was given ----------


def _saved_tiny_checkpoint(folder: Path, tokenizer: bool = True) -> Path:
    config = tiny_config()
    A2GenForActionGeneration(config).save_pretrained(folder)
    if tokenizer:
        tiny_tokenizer(config).save_pretrained(folder)
    return folder


def test_config_json_and_weights_of_different_models_say_so_not_that_a_keyword_changed_them(tmp_path):
    """load_model / a2gen evaluate / a2gen push pass the folder's own config.json as config=: before, a config.json
    edited by hand (or another model's weights copied in) ended with "The keyword argument(s) config='A2GenConfig'
    given to from_pretrained changed the model's shapes ... leave them out", though nobody gave one. A config= that
    is not the saved one keeps that hint; transformers' LOAD REPORT table no longer repeats the list."""
    import logging

    from transformers.utils import logging as transformers_logging

    from a2gen_hf import MMoEForActionPrediction
    from a2gen_hf.checkpoints import load_model
    from a2gen_hf.strict_loading import CheckpointError

    class Records(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    edited = _saved_tiny_checkpoint(tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "hidden_size": 16}))
    other = _saved_tiny_checkpoint(tmp_path / "other")
    baseline_model("mmoe").save_pretrained(tmp_path / "mmoe")
    (other / "model.safetensors").write_bytes((tmp_path / "mmoe" / "model.safetensors").read_bytes())
    cause = r"config\.json and model\.safetensors come from different models \(one of them was replaced by another " \
            r"model's file, or config\.json was edited\): restore the file that was replaced, or save the model again"
    report = Records()
    transformers_logger = logging.getLogger("transformers.modeling_utils")
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    transformers_logger.addHandler(report)
    try:
        for folder, listed in ((edited, "tensors of another shape"), (other, "tensors the model does not have")):
            saved_config = A2GenConfig.from_pretrained(folder)
            for load, arguments in ((load_model, {}), (push_checkpoint, {"repo_id": "unused/repo", "token": "unused"}),
                                    (A2GenForActionGeneration.from_pretrained, {"config": saved_config})):  # fmt: skip
                with pytest.raises((CheckpointError, HubPushError), match=cause) as raised:
                    load(folder, **arguments)
                assert listed in str(raised.value) and "keyword argument" not in str(raised.value)
            with pytest.raises(CheckpointError, match=cause + r" so that both are written together \(from_pretrained\(\.\.\., "
                                                                r"strict=False\) loads them anyway\)\.$"):
                A2GenForActionGeneration.from_pretrained(folder)
        assert not [message for message in report.messages if "LOAD REPORT" in message]
        with pytest.raises(CheckpointError, match=r"keyword argument\(s\) config='A2GenConfig' given to from_pretrained"):
            A2GenForActionGeneration.from_pretrained(_saved_tiny_checkpoint(tmp_path / "good"),
                                                     config=tiny_config(hidden_size=16))  # fmt: skip
        A2GenForActionGeneration.from_pretrained(other, strict=False)  # transformers' own: its report is kept
        assert [message for message in report.messages if "LOAD REPORT" in message]
        report.messages.clear()  # (review) the caller's ignore_mismatched_sizes: the report is the only word of it
        A2GenForActionGeneration.from_pretrained(edited, ignore_mismatched_sizes=True)
        assert [message for message in report.messages if "LOAD REPORT" in message]
    finally:
        transformers_logger.removeHandler(report)
        transformers_logging.set_verbosity(verbosity)
    assert type(load_model(tmp_path / "mmoe")) is MMoEForActionPrediction  # the weights themselves are fine


def test_push_of_a_folder_without_tokenizer_names_the_files_and_where_a2gen_writes_them(tmp_path, capsys):
    """Before: "Pass tokenizer=..., or save it ... with tokenizer.save_pretrained(folder)", Python advice for
    `a2gen push FOLDER`. A model object without a tokenizer keeps the Python advice."""
    folder = _saved_tiny_checkpoint(tmp_path / "notok", tokenizer=False)
    with pytest.raises(HubPushError, match=rf"No tokenizer in {folder} to push with the model to unused/repo: "
                                           rf"tokenizer_config\.json and vocab\.json are missing from {folder}\.") as raised:
        push_checkpoint(folder, "unused/repo", token="unused")
    message = str(raised.value)
    assert "The OUTPUT/model folder of a2gen train holds the tokenizer" in message
    assert "copy tokenizer_config.json and vocab.json from the tokenizer/ folder of the data" in message
    assert "tokenizer=" not in message and "save_pretrained" not in message
    (folder / "tokenizer").mkdir()
    tiny_tokenizer(tiny_config()).save_pretrained(folder / "tokenizer")
    (folder / "tokenizer" / "tokenizer_config.json").unlink()
    (folder / "vocab.json").write_text((folder / "tokenizer" / "vocab.json").read_text())
    with pytest.raises(HubPushError, match=rf"tokenizer_config\.json is missing from {folder} \(and its tokenizer/ "
                                           r"subfolder lacks tokenizer_config\.json\)"):  # fmt: skip
        push_checkpoint(folder, "unused/repo", token="unused")
    assert cli_main(["push", str(folder), "someone/x"]) == 2
    assert "is missing from" in capsys.readouterr().err
    with pytest.raises(HubPushError, match=r"Pass tokenizer=\.\.\., or save it"):
        push_checkpoint(A2GenForActionGeneration(tiny_config()), "unused/repo", token="unused")


@pytest.mark.parametrize("repo_id", ["me/x/y z", "me/x/y", "me/x y", "https://huggingface.co/me/x", "me/-x", "a--b"])
def test_push_checks_the_repo_id_before_loading_anything(tmp_path, capsys, repo_id):
    """Before: `a2gen push runs/base/model "me/x/y z"` loaded the model, then printed huggingface_hub's "Repo id must
    be in the form 'repo_name' or 'namespace/repo_name' ... Use `repo_type` argument if needed". huggingface_hub's
    own rule (validate_repo_id) now refuses it first, in plain terms: the folder here does not even exist."""
    import re

    expected = rf"{re.escape(repr(repo_id))} is not a Hub repository id: give 'name' or 'namespace/name'"
    with pytest.raises(HubPushError, match=expected):
        push_checkpoint(tmp_path / "no-such-folder", repo_id, token="unused")
    assert cli_main(["push", str(tmp_path / "no-such-folder"), repo_id]) == 2
    err = capsys.readouterr().err
    assert "is not a Hub repository id" in err and "repo_type" not in err and "does not exist" not in err
    from a2gen_hf.hub import repo_id_problem

    assert [repo_id_problem(good) for good in ("name", "me/a2gen-base", "Org_1/model.v2")] == [None] * 3
