"""A2GenConfig and the baselines' configs: typed fields, validation, refused keywords, old config.json files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from a2gen_hf import A2GenConfig, A2GenConfigError, A2GenForActionGeneration

LEGACY = Path(__file__).parent / "fixtures" / "legacy_checkpoints"


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_an_old_config_json_with_user_side_list_length_still_loads(generator, tmp_path):
    saved = json.loads((LEGACY / generator / "config.json").read_text())
    assert "user_side_list_length" in saved  # the fixture is an old file
    shutil.copy(LEGACY / generator / "config.json", tmp_path / "config.json")
    config = A2GenConfig.from_pretrained(tmp_path)
    assert config.generator_type == generator
    assert config.hidden_size == saved["hidden_size"]
    assert "user_side_list_length" not in config.to_dict()
    config.save_pretrained(tmp_path / "again")
    assert "user_side_list_length" not in json.loads((tmp_path / "again" / "config.json").read_text())


def test_user_side_list_length_is_deprecated_and_dropped():
    with pytest.warns(FutureWarning, match=r"user_side_list_length=\.\.\.\) is deprecated and ignored"):
        config = A2GenConfig(num_user_side_lists=2, user_side_list_length=5)
    assert config.num_user_side_lists == 2
    assert not hasattr(config, "user_side_list_length")
    assert "user_side_list_length" not in config.to_dict()


def test_the_config_is_typed_and_refuses_unknown_keywords():
    import dataclasses

    types = {item.name: item.type for item in dataclasses.fields(A2GenConfig)}
    assert types["hidden_size"] is int and types["use_cache"] is bool
    with pytest.raises(A2GenConfigError, match=r"unknown keyword argument\(s\) \['hiden_size'\]; its fields are \[.*'hidden_size'"):
        A2GenConfig(hiden_size=16)
    with pytest.raises(A2GenConfigError, match=r"Field 'hidden_size' expected int, got str"):
        A2GenConfig(hidden_size="16")
    config = A2GenConfig(hidden_size=16, time_loss_weight=1)  # an int is a valid float setting
    with pytest.raises(Exception, match="expected bool"):
        config.use_cache = "yes"  # checked on assignment too
    assert A2GenConfig(generator="eag").generator_type == "eag"  # the alias


def test_save_and_load_round_trip(tmp_path):
    config = A2GenConfig(hidden_size=16, generator_type="eag", action_names=("click", "buy", "leave"), start_action="click")
    assert config.action_names == ["click", "buy", "leave"] and (config.bos_token_id, config.eos_token_id) == (1, 3)
    config.save_pretrained(tmp_path)
    loaded = A2GenConfig.from_pretrained(tmp_path)
    assert {k: v for k, v in loaded.to_dict().items() if k != "transformers_version"} == {
        k: v for k, v in config.to_dict().items() if k != "transformers_version"
    }


def test_a_config_json_without_newer_fields_reads_the_legacy_values(tmp_path):
    from a2gen_hf.configuration_a2gen import LEGACY_DEFAULTS

    saved = A2GenConfig(hidden_size=16).to_dict()
    for name in LEGACY_DEFAULTS:
        saved.pop(name)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = A2GenConfig.from_pretrained(tmp_path)
    assert {name: getattr(loaded, name) for name in LEGACY_DEFAULTS} == LEGACY_DEFAULTS
    assert A2GenConfig().eag_shared_event_embedding is True  # new configs get the paper's defaults


def test_baselines_share_only_what_they_read(tmp_path):
    from a2gen_hf import MMoEConfig, PLEConfig
    from a2gen_hf.configuration_a2gen import A2GEN_ONLY_FIELDS, ActionSequenceConfig

    assert not isinstance(MMoEConfig(), A2GenConfig) and isinstance(MMoEConfig(), ActionSequenceConfig)
    assert {"hidden_size", "num_attention_heads", "generator_type", "history_pooling"} <= A2GEN_ONLY_FIELDS
    assert not A2GEN_ONLY_FIELDS & MMoEConfig.field_names()
    assert MMoEConfig.field_names() - ActionSequenceConfig.field_names() == {
        "history_input", "expert_hidden_sizes", "tower_hidden_sizes", "expert_dropout_prob", "num_experts"
    }
    # A2Gen's options are accepted and dropped (one set of options for a2gen compare), not saved.
    config = PLEConfig(hidden_size=8, generator="eag", num_levels=2)
    assert config.num_levels == 2 and "hidden_size" not in config.to_dict()
    with pytest.raises(A2GenConfigError, match=r"PLEConfig got unknown keyword argument\(s\) \['num_experts'\]"):
        PLEConfig(num_experts=3)
    # A config.json of an older version, which wrote every A2Gen field, still loads.
    old = {**A2GenConfig(hidden_size=8).to_dict(), **MMoEConfig(num_experts=3).to_dict(), "user_side_list_length": 20}
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = MMoEConfig.from_pretrained(tmp_path)
    assert loaded.num_experts == 3 and not hasattr(loaded, "hidden_size")


def test_a_saved_tiny_model_reloads_its_typed_config(tiny_model, tmp_path):
    from a2gen_hf import A2GenForActionGeneration

    model = tiny_model("eag", max_actions=3)
    model.save_pretrained(tmp_path)
    reloaded = A2GenForActionGeneration.from_pretrained(tmp_path)
    assert type(reloaded.config) is A2GenConfig
    assert (reloaded.config.generator_type, reloaded.config.max_actions) == ("eag", 3)


def test_embedding_tables_start_at_their_configured_scales_and_linear_maps_do_not_follow_them():
    """Id tables start at `initializer_range`, the action table at `action_embedding_init_std` (both 0.02 by default;
    `--embedding-init-std`, `--action-init-std`), for A2Gen and the fairly fed baselines; linear maps stay LeCun."""
    from a2gen_hf import A2GenForActionGeneration, MMoEConfig, MMoEForActionPrediction

    def scales(**overrides):
        torch.manual_seed(0)
        config = A2GenConfig(hidden_size=16, item_buckets=2048, user_buckets=256, side_feature_buckets=64, **overrides)
        model = A2GenForActionGeneration(config)
        actions = model.a2gen.event_embedding.action_embeddings.weight.detach()
        items = model.a2gen.features.item_embeddings.weight[1:].detach()
        linear = model.a2gen.encoder.action_attention.key.weight.detach()
        assert actions[0].abs().max() == 0  # padding
        return float(actions[1:].std()), float(items.std()), float(linear.std()) * linear.shape[1] ** 0.5

    actions, items, linear = scales()
    assert 0.01 < actions < 0.03 and 0.015 < items < 0.025 and 0.8 < linear < 1.2
    actions, items, linear_unit = scales(action_embedding_init_std=1.0)
    assert 0.7 < actions < 1.3 and items < 0.025 and abs(linear_unit - linear) < 1e-6
    actions, items, _ = scales(initializer_range=1.0)
    assert actions < 0.03 and 0.9 < items < 1.1
    mmoe = MMoEForActionPrediction(MMoEConfig(item_buckets=2048, user_buckets=256, history_input="items_and_events",
                                              action_embedding_init_std=1.0))
    assert 0.7 < float(mmoe.inputs.event_embedding.action_embeddings.weight[1:].detach().std()) < 1.3  # fairly fed


def test_fields_changed_after_building_are_checked_by_validate_and_by_the_model(tmp_path):
    """A config is checked when built; ``config.validate()`` (the typed config's check) and every model built from
    it check a field changed since, and so does from_pretrained with a keyword override."""
    from a2gen_hf import A2GenForActionGeneration

    config = A2GenConfig(hidden_size=16, num_attention_heads=4)
    config.validate()
    A2GenForActionGeneration(config).save_pretrained(tmp_path)
    config.num_attention_heads = 5
    # The package's error type however the field was set (before: huggingface_hub's StrictDataclass errors, which
    # are no ValueError, from validate() and from assigning a wrong type).
    with pytest.raises(A2GenConfigError, match="not divisible by num_attention_heads=5"):
        config.validate()
    with pytest.raises(A2GenConfigError, match="Field 'hidden_size' expected int, got str"):
        config.hidden_size = "16"
    with pytest.raises(A2GenConfigError, match="item_buckets=1 must be >= 2"):  # as the tokenizer refuses it
        A2GenConfig(item_buckets=1)
    with pytest.raises(A2GenConfigError, match="hidden_size=16 is not divisible by num_attention_heads=5"):
        A2GenForActionGeneration(config)
    with pytest.raises(A2GenConfigError, match="hidden_size=30 is not divisible by num_attention_heads=4"):
        A2GenForActionGeneration.from_pretrained(tmp_path, hidden_size=30)
    config = A2GenConfig(hidden_size=16, num_attention_heads=4)
    config.generator_type = "zzz"
    with pytest.raises(A2GenConfigError, match=r"generator='zzz' is unknown"):
        A2GenForActionGeneration(config)


def test_an_alias_and_its_field_must_agree():
    assert A2GenConfig(generator="eag").generator_type == "eag"
    assert A2GenConfig(generator="eag", generator_type="eag").generator_type == "eag"
    with pytest.raises(A2GenConfigError, match="generator='iag' and generator_type='eag' disagree"):
        A2GenConfig(generator="iag", generator_type="eag")
    # generator_type given at its default: before, the alias won silently
    with pytest.raises(A2GenConfigError, match="generator='eag' and generator_type='iag' disagree"):
        A2GenConfig(generator="eag", generator_type="iag")
    with pytest.raises(A2GenConfigError, match="generator='eag' and generator_type='iag' disagree"):
        A2GenConfig.from_dict(A2GenConfig().to_dict(), generator="eag", generator_type="iag")


def test_an_alias_set_after_construction_sets_its_field(tmp_path):
    """Before: `config.generator = "eag"` left generator_type "iag" and an attribute that transformers read as a
    sub-config, so building the model failed with "'str' object has no attribute 'to_dict'"."""
    config = A2GenConfig(hidden_size=8, num_attention_heads=2, item_buckets=50, user_buckets=10)
    config.generator = "eag"
    assert config.generator_type == "eag" and "generator" not in config.__dict__
    assert type(A2GenForActionGeneration(config).generator).__name__ == "ExplicitActionGenerator"
    config.update({"generator": "iag"})
    assert config.generator_type == "iag"
    config.save_pretrained(tmp_path)  # no stray attribute to refuse
    with pytest.raises(A2GenConfigError, match="generator='zzz' is unknown"):
        config.generator = "zzz"
        A2GenForActionGeneration(config)


def test_a_dict_written_by_hand_gets_today_s_defaults():
    """Legacy values are for files save_pretrained wrote before a field existed; a hand-written dict (no
    transformers_version) builds the model A2GenConfig(**fields) and AutoConfig.for_model build."""
    from transformers import AutoConfig

    from a2gen_hf.configuration_a2gen import LEGACY_DEFAULTS

    by_hand = A2GenConfig.from_dict({"hidden_size": 64})
    built = A2GenConfig(hidden_size=64)
    for name in LEGACY_DEFAULTS:
        assert getattr(by_hand, name) == getattr(built, name) == getattr(AutoConfig.for_model("a2gen", hidden_size=64), name)
    assert A2GenConfig.from_dict({"hidden_size": 64, "transformers_version": "4.57.0"}).cam_gate_input == "projected"


def test_from_pretrained_keywords_are_checked_as_the_constructor_checks_them(tmp_path):
    """transformers sets from_dict / from_pretrained keywords after building, unchecked: `generator="eag"` (an alias)
    was dropped (IAG came back), `hidden_size=-64` kept, a misspelt field dropped without a word."""
    from transformers import AutoConfig

    A2GenConfig(generator_type="iag").save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path, generator="eag").generator_type == "eag"
    assert A2GenConfig.from_dict(A2GenConfig().to_dict(), generator="eag").generator_type == "eag"
    assert A2GenConfig.from_pretrained(tmp_path, hidden_size=64).hidden_size == 64
    with pytest.raises(A2GenConfigError, match="hidden_size=-64 must be a positive integer"):
        A2GenConfig.from_pretrained(tmp_path, hidden_size=-64)
    with pytest.raises(A2GenConfigError, match=r"unknown keyword argument\(s\) \['hiden_size'\].*Check the spelling"):
        A2GenConfig.from_pretrained(tmp_path, hiden_size=64)
    config, unused = A2GenConfig.from_pretrained(tmp_path, hiden_size=64, return_unused_kwargs=True)
    assert unused == {"hiden_size": 64} and config.output_attentions is False  # a model's from_pretrained hands them on
    assert AutoConfig.from_pretrained(tmp_path, output_attentions=True).output_attentions
    for loading in ("code_revision", "resume_download", "use_auth_token"):  # transformers' own: passed over
        assert AutoConfig.from_pretrained(tmp_path, **{loading: None}).generator_type == "iag"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("time_loss_weight", float("nan"), "time_loss_weight=nan must be a finite number"),
        ("action_loss_weight", float("inf"), "action_loss_weight=inf must be a finite number"),
        ("time_log_mean", float("nan"), "time_log_mean=nan must be a finite number"),
        ("time_log_std", float("inf"), "time_log_std=inf must be a finite number"),
        ("initializer_range", -1.0, r"initializer_range=-1.0 must be >= 0 \(a standard deviation\)"),
        ("action_embedding_init_std", float("nan"), "action_embedding_init_std=nan must be a finite number"),
        ("pad_token_id", 3, r"pad_token_id=3: id 0 \('<pad>'\) is the padding"),
        ("bos_token_id", 2, r"bos_token_id=2: sequences open with start_action 'start' \(id 1\)"),
    ],
)
def test_numbers_that_break_the_maths_are_refused_by_field(field, value, message):
    """NaN passed every `< 0` check (a NaN loss, NaN expected seconds); a negative init std failed in torch naming no
    field; pad_token_id=3 made generate() fill finished sequences with an action."""
    from a2gen_hf import MMoEConfig

    for config_class in (A2GenConfig, MMoEConfig):
        with pytest.raises(A2GenConfigError, match=message):
            config_class(**{field: value})


def test_a_config_of_another_model_type_is_refused_not_half_read(tmp_path):
    """transformers only warns ("You are using a model of type a2gen to instantiate a model of type a2gen_mmoe"):
    MMoEConfig.from_pretrained(an A2Gen folder) came back with model_type 'a2gen' and A2Gen's fields dropped;
    A2GenConfig(model_type="a2gen_ple") kept the foreign type."""
    from transformers import AutoConfig

    from a2gen_hf import MMoEConfig

    A2GenConfig(hidden_size=8, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(A2GenConfigError, match=r"model_type='a2gen': a MMoEConfig is 'a2gen_mmoe'.*AutoConfig"):
        MMoEConfig.from_pretrained(tmp_path)
    with pytest.raises(A2GenConfigError, match=r"model_type='a2gen_ple': a A2GenConfig is 'a2gen'"):
        A2GenConfig(model_type="a2gen_ple")
    assert type(AutoConfig.from_pretrained(tmp_path)) is A2GenConfig
    assert A2GenConfig(**A2GenConfig().to_dict()).model_type == "a2gen"


def test_a_vocabulary_changed_by_keywords_derives_bos_and_eos_again(tmp_path):
    """from_pretrained(path, action_names=...) kept the saved bos / eos ids: a reordered vocabulary's bos was refused as
    set by hand, and an action added before the end left eos naming another action (generation stopped there)."""
    A2GenConfig().save_pretrained(tmp_path)
    names = ["like", "start", "follow", "forward", "comment", "share", "leave"]
    config = A2GenConfig.from_pretrained(tmp_path, action_names=names)
    assert (config.bos_token_id, config.eos_token_id) == (config.start_action_id, config.end_action_id) == (2, 7)
    kept = A2GenConfig.from_pretrained(tmp_path, action_names=names, eos_token_id=[6, 7])
    assert kept.eos_token_id == [6, 7]
    with pytest.raises(A2GenConfigError, match=r"eos_token_id=\[0, 6\]: the ids that end a sequence are action ids 1..6"):
        A2GenConfig(eos_token_id=[0, 6])


def test_a_vocabulary_changed_by_assignment_derives_bos_and_eos_again():
    """Before: the ids derived at construction stayed, and the model refused them with "leave it unset"."""
    config = A2GenConfig(hidden_size=8, num_attention_heads=2, item_buckets=50, user_buckets=10)
    config.action_names = ["start", "like", "leave"]
    assert (config.bos_token_id, config.eos_token_id) == (1, 3)
    A2GenForActionGeneration(config)
    config.action_names = ["like", "start", "leave", "buy"]
    config.end_action = "buy"
    assert (config.bos_token_id, config.eos_token_id) == (2, 4)
    config.eos_token_id = [3, 4]  # set by hand: kept
    config.action_names = ["like", "start", "leave", "buy", "share"]
    assert (config.bos_token_id, config.eos_token_id) == (2, [3, 4])


def test_an_id_free_model_must_see_something_of_the_target_item():
    """Without id embeddings, item side features or the items' counts every candidate would get the same score (a
    probe's paper_inputs run on a log without side columns ranked at chance, silently): refused, naming the fixes."""
    with pytest.raises(A2GenConfigError, match=r"would see nothing of the target item.*--no-id-free.*--generic-side-features"):
        A2GenConfig(use_id_embeddings=False, num_item_side_features=0)
    A2GenConfig(use_id_embeddings=False, num_item_side_features=1)
    A2GenConfig(use_id_embeddings=False, num_item_side_features=0, target_popularity_features=True)
    A2GenConfig(use_id_embeddings=True, num_item_side_features=0)


def test_an_attribute_that_is_no_field_is_refused_when_saving_not_after(tmp_path):
    """`config.experiment = ...` then save_pretrained wrote a config.json that from_pretrained refused; the save
    refuses it by name and writes nothing, and the config saves again once it is deleted."""
    config = A2GenConfig()
    config.experiment = "run-42"
    with pytest.raises(A2GenConfigError, match=r"attribute\(s\) \['experiment'\] that are none of its fields.*del config\.experiment"):
        config.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved" / "config.json").exists()
    del config.experiment
    config.save_pretrained(tmp_path / "saved")
    assert A2GenConfig.from_pretrained(tmp_path / "saved").to_dict() == config.to_dict()


def test_transformers_own_config_keys_still_save_and_load(tmp_path):
    """transformers' Pipeline.save_pretrained sets config.custom_pipelines for a registered task; the save-time check
    of non-field attributes lets transformers' keys through, and the file loads again."""
    config = A2GenConfig()
    config.custom_pipelines = {"action-generation": {"impl": "pipelines.ActionGenerationPipeline"}}
    config.save_pretrained(tmp_path)
    assert A2GenConfig.from_pretrained(tmp_path).custom_pipelines == config.custom_pipelines


def test_history_event_cross_layers_has_a_documented_upper_bound():
    """The multiplicative DCN-v2 cross grows with depth: at 20 layers the loss at initialisation was 167, at 300 the
    gradients were NaN, and 10**12 built layers until memory ran out, all without a word."""
    from a2gen_hf.configuration_a2gen import MAX_HISTORY_EVENT_CROSS_LAYERS

    assert MAX_HISTORY_EVENT_CROSS_LAYERS == 8
    assert A2GenConfig(history_event_cross_layers=8).history_event_cross_layers == 8
    for layers in (9, 20, 300, 10**12):
        with pytest.raises(
            A2GenConfigError,
            match=rf"history_event_cross_layers={layers} is out of range: it must be an integer from 0 to 8 "
            r"\(MAX_HISTORY_EVENT_CROSS_LAYERS; the docs use 1 or 2",
        ):
            A2GenConfig(history_event_cross_layers=layers)
    with pytest.raises(A2GenConfigError, match="history_event_cross_layers=-1 must be an integer >= 0 and at most 8"):
        A2GenConfig(history_event_cross_layers=-1)


A2GEN_SIZE_FIELDS = [
    "hidden_size", "head_dim", "id_embedding_size", "action_embedding_size", "time_embedding_size",
    "occurrence_hidden_size", "user_buckets", "item_buckets", "side_feature_buckets", "rare_id_buckets",
    "popularity_table_size", "num_attention_heads", "num_time_frequencies", "time_buckets", "num_item_side_features",
    "num_user_side_lists", "history_event_moment_topics", "history_event_item_moments",
    "history_event_moment_smoothing",
]  # fmt: skip


@pytest.mark.parametrize("field", A2GEN_SIZE_FIELDS)
@pytest.mark.parametrize("huge", [10**12, 2**70], ids=["1e12", "2^70"])
def test_sizes_and_counts_above_their_bounds_are_refused_by_field(field, huge):
    """Before: 10**12 was accepted and building failed in torch's allocator (naming no field), with an int64 overflow
    (2**70) or in a loop that ran until memory was exhausted."""
    shown = "1000000000000" if huge == 10**12 else r"1\.18e\+21"
    with pytest.raises(A2GenConfigError, match=rf"{field}={shown} is out of range: it must be an integer from") as refused:
        A2GenConfig(**{field: huge})
    from a2gen_hf.configuration_a2gen import SIZE_BOUNDS

    low, high, _ = SIZE_BOUNDS[field]
    assert f"it must be an integer from {low} to {high:,} (MAX_" in str(refused.value)
    with pytest.raises(A2GenConfigError, match=rf"{field}={high + 1} is out of range"):
        A2GenConfig(**{field: high + 1})


def test_the_size_bounds_leave_every_documented_configuration_alone():
    """The largest documented values: 1 M-row tables (docs/performance.md), the 2^22 rows a data folder sizes a table
    at, 64 moment buckets, 32 time buckets, a width of 64; and each bound itself is accepted."""
    from a2gen_hf.configuration_a2gen import MAX_TABLE_ROWS, MAX_WIDTH
    from a2gen_hf.data.buckets import MAX_DATA_SIZED_BUCKETS

    assert MAX_TABLE_ROWS >= 1024 * MAX_DATA_SIZED_BUCKETS
    A2GenConfig(item_buckets=1_000_000, user_buckets=1 << 20, side_feature_buckets=MAX_DATA_SIZED_BUCKETS,
                history_event_item_moments=64, time_buckets=32, hidden_size=64, occurrence_hidden_size=64)  # fmt: skip
    A2GenConfig(item_buckets=MAX_TABLE_ROWS, hidden_size=MAX_WIDTH, head_dim=MAX_WIDTH, id_embedding_size=MAX_WIDTH)


@pytest.mark.parametrize(
    "field", ["time_loss_weight", "action_loss_weight", "time_log_mean", "time_log_std", "initializer_range",
              "occurrence_path_scale", "history_event_moment_seconds", "embedding_dropout_prob"],
)  # fmt: skip
def test_an_integer_beyond_a_float_is_refused_by_field(field):
    """Before: an int passed the finite check and failed later with "OverflowError: int too large to convert to
    float" (at build for the scales and time statistics, at the first forward for the loss weights)."""
    with pytest.raises(A2GenConfigError, match=rf"{field}=~10\*\*400 must be a finite number \(this integer is beyond"):
        A2GenConfig(**{field: 10**400})


@pytest.mark.parametrize("field", ["initializer_range", "action_embedding_init_std", "occurrence_path_scale"])
def test_scales_have_a_sane_upper_bound(field):
    """initializer_range=1e308 gave NaN logits (generate() then failed with "scores are NaN") and
    occurrence_path_scale=1e308 a NaN loss, without naming the field."""
    for value in (1e308, 11):
        with pytest.raises(A2GenConfigError, match=rf"{field}={re.escape(repr(value))} is above MAX_SCALE=10\.0: give a value in"):
            A2GenConfig(**{field: value})
    assert getattr(A2GenConfig(**{field: 10.0}), field) == 10.0


@pytest.mark.parametrize("name", ["", "two words", " like", "tab\there"])
def test_action_names_the_tokenizer_refuses_are_refused_by_the_config(name):
    """Before: the config (and so the model) took them; only building the tokenizer refused them, later. One rule:
    the tokenizer's message is the config's."""
    from a2gen_hf import A2GenActionTokenizer

    names = ["start", name, "leave"]
    with pytest.raises(A2GenConfigError, match=r"action_names\[1\]: Action name .* is not a single word") as refused:
        A2GenConfig(action_names=names)
    from a2gen_hf.configuration_a2gen import action_name_problem

    rule = action_name_problem(name)
    assert rule in str(refused.value)
    with pytest.raises(ValueError) as by_the_tokenizer:
        A2GenActionTokenizer(action_names=names)
    assert str(by_the_tokenizer.value) == rule


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_from_json_file_reads_an_old_config_json_as_from_pretrained_does(generator):
    """Before: transformers' from_json_file built cls(**dict) and skipped LEGACY_DEFAULTS, so the same saved file
    read as another model (iag_slot_activation linear, time_loss_reduction mean, cam_gate_input context)."""
    from a2gen_hf.configuration_a2gen import LEGACY_DEFAULTS

    folder = LEGACY / generator
    by_file = A2GenConfig.from_json_file(folder / "config.json")
    by_folder = A2GenConfig.from_pretrained(folder)
    assert by_file.to_dict() == by_folder.to_dict()
    saved = json.loads((folder / "config.json").read_text())
    missing = [name for name in LEGACY_DEFAULTS if name not in saved]
    assert "cam_gate_input" in missing
    assert {name: getattr(by_file, name) for name in missing} == {name: LEGACY_DEFAULTS[name] for name in missing}


@pytest.mark.parametrize("eos", [1, [], [6, 1]])
def test_eos_token_id_refuses_the_start_and_an_empty_list(eos):
    """The start is never generated, so eos_token_id=1 ended nothing (EAG's generate gave the default's output);
    an empty list named no end id. Other actions stay allowed, as generate() honours them."""
    expected = "lists no id" if eos == [] else "holds the start action 'start' (id 1)"
    with pytest.raises(A2GenConfigError, match=re.escape(f"eos_token_id={eos!r} {expected}")):
        A2GenConfig(eos_token_id=eos)
    assert A2GenConfig(eos_token_id=[6, 2]).eos_token_id == [6, 2]


def test_a_negative_hidden_size_reports_only_its_real_problem():
    """Before: hidden_size=-1 was also "not divisible by num_attention_heads=4" (-1 % 4 == 3 in Python)."""
    with pytest.raises(A2GenConfigError) as refused:
        A2GenConfig(hidden_size=-1)
    assert "hidden_size=-1 must be a positive integer" in str(refused.value)
    assert "divisible" not in str(refused.value)
    with pytest.raises(A2GenConfigError, match=r"not divisible by num_attention_heads=4.*or set head_dim"):
        A2GenConfig(hidden_size=30)
    assert A2GenConfig(hidden_size=30, head_dim=8).hidden_size == 30
