"""transformers / Hub contracts of the package's published artefacts (probe s29): the card a push leaves in a repo
whatever entry point ran first, special tokens that would hide real actions, text targets, loading messages that name
the real cause, config keys that transformers keeps, and one home for ``eval_results``, ``token`` and licenses.

Pushes go to tests/hub_server.py in this process (``hub_env``, as in tests/test_hub.py: HfApi and transformers' shared
client point at the server); nothing here loads through a subprocess.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from hub_server import HubServer, point_clients_at
from huggingface_hub import ModelCard, ModelCardData
from test_hub import metrics_file_text, tiny_config, tiny_tokenizer
from transformers import AutoConfig, AutoModel, AutoTokenizer

from a2gen_hf import A2GenActionTokenizer, A2GenConfig, A2GenForActionGeneration, AutoModelForActionGeneration
from a2gen_hf import hub as a2gen_hub
from a2gen_hf.hub import HubPushError, build_model_card, push_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("hub-storage")) as server:
        yield server


@pytest.fixture
def hub_env(hub, monkeypatch):
    """This process's HfApi and transformers' shared client talk to the test server (as in tests/test_hub.py)."""
    point_clients_at(hub, monkeypatch)
    return hub


def card_text(server: HubServer, repo_id: str, revision: str = "main") -> str:
    return server.files(repo_id, revision=revision)["README.md"].decode()


# --- 1. the A2Gen card lands whatever wrote the repo's README first ------------------------------------------------


@pytest.mark.parametrize("first", ["tokenizer", "config"])
def test_a_template_card_of_an_earlier_transformers_push_is_replaced_by_the_a2gen_card(hub_env, first, caplog):
    """The HF idiom tokenizer.push_to_hub(repo) then model.push_to_hub(repo): transformers' push writes its template
    README; before, the model push kept it as a hand-written card (no A2Gen card, no model-index, no custom_code)."""
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    repo = f"template-first-{first}"
    (tokenizer if first == "tokenizer" else config).push_to_hub(repo)
    repo_id = f"{hub_env.user}/{repo}"
    assert "This model card has been automatically generated" in card_text(hub_env, repo_id)  # transformers' template
    with caplog.at_level(logging.INFO, logger="a2gen_hf.hub"):
        model.push_to_hub(repo, tokenizer=tokenizer)
    card = ModelCard(card_text(hub_env, repo_id))
    assert "An **A2Gen**" in card.text and "custom_code" in card.data.tags
    assert "automatically generated" not in card.text
    assert "edited or written by hand" not in caplog.text and "template README.md" in caplog.text


def test_only_the_untouched_template_card_is_replaced():
    """The review of s29: the first rule took any card holding the template's title or one of its sentences (a
    template a person filled in, a Trainer card) for a template, and replaced it."""
    template = str(ModelCard.from_template(ModelCardData(tags=["x"], library_name="transformers"),
                                           model_description=a2gen_hub.TRANSFORMERS_TEMPLATE_DESCRIPTION))
    assert a2gen_hub.card_is_template(template)
    assert a2gen_hub.card_is_template(template.replace("\n", "\r\n"))
    filled = template.replace("- **Developed by:** [More Information Needed]", "- **Developed by:** our team", 1)
    assert filled != template and not a2gen_hub.card_is_template(filled)
    trainer_card = ("<!-- This model card has been generated automatically according to the information the Trainer "
                    "had access to. You should probably proofread and complete it, then remove this comment. -->\n"
                    "# my-model\n\nIt achieves the following results: loss 0.3\n")
    assert not a2gen_hub.card_is_template(trainer_card)
    assert not a2gen_hub.card_is_template("# Model Card for Model ID\n\nWritten by hand.\n")
    assert not a2gen_hub.card_is_template("---\n- not a mapping\n---\nbody\n")


def test_save_pretrained_refuses_to_push_another_state_dict_than_the_models(hub_env, tmp_path):
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"push_to_hub=True, state_dict=\.\.\.\): the push sends the model's own weights.*"
                                         r"push_checkpoint\("):
        model.save_pretrained(tmp_path / "s", push_to_hub=True, repo_id="sd", tokenizer=tokenizer, state_dict=state)
    with pytest.raises(a2gen_hub.HubPushError, match="license"):  # the push's checks come before any write
        model.save_pretrained(tmp_path / "l", push_to_hub=True, repo_id="sd", tokenizer=tokenizer, license="MIT License")
    assert not (tmp_path / "s").exists() and not (tmp_path / "l").exists()


def test_save_pretrained_with_push_to_hub_pushes_through_the_package(hub_env, tmp_path):
    """save_pretrained(dir, push_to_hub=True): before, transformers' own push (template card, no tokenizer files)."""
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    with pytest.raises(ValueError, match=r"push_to_hub=True\) pushes the model with its tokenizer.*pass tokenizer="
                                         r".*model\.push_to_hub\('via-save', tokenizer=tokenizer\)\. Nothing was saved"):
        model.save_pretrained(tmp_path / "refused", push_to_hub=True, repo_id="via-save")
    assert not (tmp_path / "refused").exists()
    model.save_pretrained(tmp_path / "saved", push_to_hub=True, repo_id="via-save", tokenizer=tokenizer,
                          commit_message="via save_pretrained")
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    files = hub_env.files(f"{hub_env.user}/via-save")
    assert {"tokenizer_config.json", "vocab.json", "model.safetensors", "modeling_a2gen.py"} <= set(files)
    card = ModelCard(files["README.md"].decode())
    assert "An **A2Gen**" in card.text and "custom_code" in card.data.tags
    # repo_id defaults to the folder's name, as in transformers
    model.save_pretrained(tmp_path / "folder-named", push_to_hub=True, tokenizer=tokenizer)
    assert "config.json" in hub_env.files(f"{hub_env.user}/folder-named")


# --- 2, 3, 6, 10: the tokenizer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mark",
    [
        lambda tok: tok.add_special_tokens({"additional_special_tokens": ["like", "comment"]}),
        lambda tok: tok.add_special_tokens({"unk_token": "like"}),
        lambda tok: setattr(tok, "unk_token", "like"),
        lambda tok: tok.add_special_tokens({"extra_special_tokens": {"mine": "follow"}}),
        lambda tok: setattr(tok, "sep_token", "comment"),
    ],
)
def test_a_real_action_cannot_be_made_special(mark):
    """decode(..., skip_special_tokens=True) would drop its events without a word (before: accepted and saved)."""
    tokenizer = A2GenActionTokenizer.from_config(tiny_config())
    with pytest.raises(ValueError, match=r"real action.*cannot be a special token: decode\(\.\.\., "
                                         r"skip_special_tokens=True\) would drop"):
        mark(tokenizer)
    assert tokenizer.batch_decode([[1, 2, 5, 6]], skip_special_tokens=True) == ["like comment"]
    assert tokenizer.add_special_tokens({"additional_special_tokens": ["start", "leave"]}) == 0  # already special


@pytest.mark.parametrize(
    ("key", "value"),
    [("unk_token", "like"), ("additional_special_tokens", ["comment"]), ("extra_special_tokens", {"x": "like"}),
     ("added_tokens_decoder", {"2": {"content": "like", "special": True, "lstrip": False, "rstrip": False,
                                     "normalized": False, "single_word": False}})],
)
def test_a_tokenizer_config_that_marks_a_real_action_special_is_refused_naming_the_file(tmp_path, key, value):
    A2GenActionTokenizer.from_config(tiny_config()).save_pretrained(tmp_path)
    path = tmp_path / "tokenizer_config.json"
    saved = json.loads(path.read_text())
    saved[key] = {**saved[key], **value} if key == "added_tokens_decoder" else value
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=rf"{path} marks real action\(s\) as special tokens \({key}: "):
        AutoTokenizer.from_pretrained(tmp_path)


def test_text_targets_encode_as_labels():
    """Before: KeyError 'input_ids' (the base class's name for this tokenizer's action_ids)."""
    tokenizer = A2GenActionTokenizer.from_config(tiny_config())
    assert dict(tokenizer("start like", text_target="start leave")) == {"action_ids": [1, 2], "labels": [1, 6]}
    batch = tokenizer(["start like", "start"], text_target=["start leave", "start"], padding=True, return_tensors="pt")
    assert torch.equal(batch["action_ids"], torch.tensor([[1, 2], [1, 0]]))
    assert torch.equal(batch["labels"], torch.tensor([[1, 6], [1, 0]]))


def test_a_keyword_argument_of_from_pretrained_is_named_not_the_file(tmp_path):
    A2GenActionTokenizer.from_config(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"^bos_token='like' disagrees") as error:
        A2GenActionTokenizer.from_pretrained(tmp_path, bos_token="like")
    assert "edited or is damaged" not in str(error.value) and "tokenizer_config.json" not in str(error.value)
    with pytest.raises(ValueError, match=r"^unk_token='like': \['like'\] is a real action"):
        A2GenActionTokenizer.from_pretrained(tmp_path, unk_token="like")


def test_decode_of_text_says_ids_are_expected():
    tokenizer = A2GenActionTokenizer.from_config(tiny_config())
    with pytest.raises(TypeError, match=r"take action ids .*got text 'start'.*convert_tokens_to_ids .*encode"):
        tokenizer.decode("start")
    with pytest.raises(TypeError, match="got text"):
        tokenizer.convert_ids_to_tokens(["start", 2])


# --- 4, 5: loading messages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", [A2GenForActionGeneration, AutoModelForActionGeneration])
def test_loading_a_generator_from_an_encoder_folder_says_so(tmp_path, loader):
    A2GenForActionGeneration(tiny_config()).save_pretrained(tmp_path / "full")
    AutoModel.from_pretrained(tmp_path / "full").save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match=r"holds an encoder without the generator: config\.json says architectures "
                                         r"\['A2GenModel'\].*Load it with AutoModel\.from_pretrained or "
                                         r"A2GenModel\.from_pretrained, or train the generator") as error:
        loader.from_pretrained(tmp_path / "encoder")
    assert "come from different models" not in str(error.value)


def test_an_overflow_of_the_dtype_cast_is_blamed_on_the_cast_not_the_file(tmp_path):
    model = A2GenForActionGeneration(tiny_config())
    with torch.no_grad():
        model.generator.heads.action.weight[0, 0] = 1e6
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"The cast to dtype=torch\.float16 overflowed: .*generator\.heads\.action\."
                                         r"weight.*largest magnitude of 1e\+06, above float16's largest value 65504\. "
                                         r"The file is fine: load with dtype=torch\.float32 \(or torch\.bfloat16") as error:
        A2GenForActionGeneration.from_pretrained(tmp_path, dtype=torch.float16)
    assert "damaged" not in str(error.value)
    assert A2GenForActionGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16).dtype == torch.bfloat16


# --- 7: config.json keys that transformers keeps ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [("tokenizer_class", "A2GenActionTokenizer"), ("tie_word_embeddings", False), ("task_specific_params", {"a": {}}),
     ("prefix", "p: "), ("sep_token_id", 3), ("_attn_implementation_autoset", True), ("decoder_start_token_id", 1),
     ("finetuning_task", "x"), ("pruned_heads", {})],
)
def test_config_keys_that_transformers_keeps_load_as_attributes(tmp_path, key, value):
    tiny_config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert getattr(loaded, key) == value
    loaded.save_pretrained(tmp_path / "again")
    assert getattr(AutoConfig.from_pretrained(tmp_path / "again"), key) == value


def test_config_set_by_hand_with_a_transformers_key_saves_and_a_typo_is_still_refused(tmp_path):
    config = tiny_config()
    config.tokenizer_class = "A2GenActionTokenizer"
    config.save_pretrained(tmp_path)
    assert A2GenConfig.from_pretrained(tmp_path).tokenizer_class == "A2GenActionTokenizer"
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "hiden_size": 8}))
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['hiden_size'\].*Check the spelling\.$"):
        A2GenConfig.from_pretrained(tmp_path)


# --- 8: the card's time statistics -----------------------------------------------------------------------------------


def test_the_card_says_default_time_statistics_are_the_defaults():
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config), tiny_tokenizer(config)
    assert (tokenizer.time_log_mean, tokenizer.time_log_std) == (0.0, 1.0)
    text = build_model_card(model, tokenizer).text
    assert "fitted on the training split" not in text and "default statistics" in text and "not fitted" in text
    tokenizer.fit_time_statistics([1.0, 5.0, 30.0])
    assert "fitted on the training split" in build_model_card(model, tokenizer).text


# --- 9: eval_results, one home ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["short with loss", "loss alone", "metrics result"])
def test_eval_results_give_the_same_card_through_push_to_hub_and_push_checkpoint(hub_env, form, caplog):
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    eval_results = {
        "short with loss": {"auc": {"like": 0.71}, "loss": 0.3},
        "loss alone": {"loss": 0.3},
        "metrics result": json.loads(metrics_file_text(config, "evaluate")),
    }[form]
    names = []
    for repo, push in ((f"eval-{form.replace(' ', '-')}-model", model.push_to_hub),
                       (f"eval-{form.replace(' ', '-')}-checkpoint", lambda *a, **k: push_checkpoint(model, *a, **k))):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="a2gen_hf.hub"):
            push(repo, tokenizer=tokenizer, eval_results=eval_results, dataset_name="sim")
        card = ModelCard(card_text(hub_env, f"{hub_env.user}/{repo}"))
        names.append(sorted((result.metric_name, result.metric_value) for result in card.data.eval_results))
        if form == "metrics result":  # what is left off is said at WARNING level
            dropped = [record for record in caplog.records if "left off the model card" in record.getMessage()
                       or "not shown" in record.getMessage()]
            assert dropped and all(record.levelno == logging.WARNING for record in dropped)
    assert names[0] == names[1]
    if form != "metrics result":
        assert ("loss", 0.3) in names[0]


# --- 10: token, license, auto_map, sharded pushes --------------------------------------------------------------------


def test_token_false_sends_no_token(hub_env):
    from huggingface_hub.errors import HfHubHTTPError

    config = tiny_config()
    with pytest.raises(HfHubHTTPError, match="401"):  # before: the stored token (HF_TOKEN) was used
        A2GenForActionGeneration(config).push_to_hub("no-token", tokenizer=tiny_tokenizer(config), token=False)
    assert hub_env.storage.load("model", f"{hub_env.user}/no-token") is None  # no repo was created


def test_build_model_card_checks_the_license_as_a_push_does():
    with pytest.raises(ValueError, match=r"license='MIT License' must be a Hub license id"):
        build_model_card(A2GenForActionGeneration(tiny_config()), license="MIT License")
    with pytest.raises(HubPushError, match=r"license='MIT License' must be a Hub license id"):
        push_checkpoint(A2GenForActionGeneration(tiny_config()), "x", license="MIT License")


def test_save_pretrained_leaves_the_live_auto_map_alone(tmp_path):
    model = A2GenForActionGeneration(tiny_config())
    before = getattr(model.config, "auto_map", None)
    model.save_pretrained(tmp_path)
    assert getattr(model.config, "auto_map", None) == before
    saved = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert saved["AutoModel"].endswith("A2GenModel") and saved["AutoModelForCausalLM"].endswith(
        "A2GenForActionGeneration")


def test_a_sharded_push_and_an_unsharded_one_after_it_leave_one_set_of_weights(hub_env):
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    repo_id = f"{hub_env.user}/sharded"
    model.push_to_hub("sharded", tokenizer=tokenizer, max_shard_size="5KB")
    files = set(hub_env.files(repo_id))
    shards = {name for name in files if name.startswith("model-") and name.endswith(".safetensors")}
    assert "model.safetensors.index.json" in files and len(shards) > 1 and "model.safetensors" not in files
    index = json.loads(hub_env.files(repo_id)["model.safetensors.index.json"])
    assert set(index["weight_map"].values()) == shards
    push_checkpoint(model, "sharded", tokenizer=tokenizer)  # unsharded: the shards and the index go
    files = set(hub_env.files(repo_id))
    assert "model.safetensors" in files and not {name for name in files if name.startswith("model-")}
    assert "model.safetensors.index.json" not in files


def test_a_tokenizer_push_after_the_model_push_leaves_the_a2gen_card_replaceable(hub_env):
    """transformers' tokenizer.push_to_hub re-saves the repo's card (adding tags): the A2Gen card must still read as
    the package's own, so that the next model push refreshes it."""
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    repo_id = f"{hub_env.user}/model-then-tokenizer"
    model.push_to_hub("model-then-tokenizer", tokenizer=tokenizer)
    tokenizer.push_to_hub("model-then-tokenizer")
    assert a2gen_hub.card_is_generated(card_text(hub_env, repo_id))


def test_the_trainers_timing_and_epoch_stay_off_the_card(caplog):
    """The review of s29: eval_results=trainer.evaluate() put eval_runtime and epoch on the card as metrics."""
    config = tiny_config()
    model, tokenizer = A2GenForActionGeneration(config).eval(), tiny_tokenizer(config)
    results = {"eval_loss": 0.3, "eval_runtime": 1.2, "eval_samples_per_second": 90.0, "eval_steps_per_second": 3.0,
               "epoch": 2.0}
    with caplog.at_level(logging.WARNING, logger="a2gen_hf.hub"):
        card = a2gen_hub.build_model_card(model, tokenizer, repo_id="me/x", eval_results=results, dataset_name="d")
    names = {result.metric_type for result in card.data.eval_results}
    assert names == {"eval_loss"}
    assert "eval_runtime" in caplog.text and "left out" in caplog.text
