"""The residual start's learned paths fitted before training (a2gen_hf.training.residual_fit), and what goes back to
the start after training (a2gen_hf.training.give_back)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from a2gen_hf.data.collator import A2GenDataCollator
from a2gen_hf.metrics import predict_dataloader, timing_mae
from a2gen_hf.training.data_setup import create_model, load_data_dir
from a2gen_hf.training.loop import TrainingSettings, validation_mean_auc
from a2gen_hf.training.residual_fit import fit_residual_paths, read_head_inputs
from a2gen_hf.training.simple_baselines import ActionTargets, check_wide_start, start_from_regression

SPARSE = dict(
    hidden_size=16, id_embedding_size=16, history_count_features=True, target_popularity_features=True,
    occurrence_head=True, wide_path=True, occurrence_paths_input="extra_only", use_id_embeddings=False,
)


def _residual_start(data, tokenizer, **overrides):
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, data, **{**SPARSE, **overrides})
    start_from_regression(model, tokenizer, data, residual=True, frozen=True)
    return model


def test_fit_scores_what_selection_scores_and_never_returns_worse_than_the_start(simulated_data_dir):
    """The fit's validation mean AUC is the training loop's (the inputs read by the hook are what predict_actions
    reads); the kept fit beats the start, or the start is left untouched; the regression stays as it was."""
    from accelerate import Accelerator

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer)
    head = model.occurrence_head
    wide_before = {name: tensor.clone() for name, tensor in head.wide.state_dict().items()}
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    settings = TrainingSettings(output_dir="unused", eval_batch_size=128)
    before = validation_mean_auc(model, data["validation"], collator, settings, Accelerator(cpu=True))
    start = before["mean_auc"]

    result = fit_residual_paths(model, tokenizer, data, weight_decays=(1e-4, 1e-2), rounds=5)

    assert result["start"] == pytest.approx(start, abs=1e-6)
    scored = validation_mean_auc(model, data["validation"], collator, settings, Accelerator(cpu=True))
    after = scored["mean_auc"]
    # Per action, never worse than the regression on validation; the actions given back have zero output rows.
    for name, auc in scored["auc"].items():
        assert auc >= before["auc"][name] - 1e-9, name
    for name in result["regression_kept_for"]:
        assert not head.output.weight[tokenizer.convert_tokens_to_ids(name)].any()
    for name, tensor in head.wide.state_dict().items():
        assert torch.equal(tensor, wide_before[name]), name
    if result["fitted"] is None:  # nothing beat the start: the learned paths stay at zero
        assert result["weight_decay"] is None and not head.output.weight.any() and after == pytest.approx(start)
    else:
        assert result["weight_decay"] in (1e-4, 1e-2) and head.output.weight.any()
        assert result["fitted"] > start and after == pytest.approx(result["fitted"], abs=1e-6)


def test_zero_learned_paths_gives_an_action_back_to_the_wide_path(simulated_data_dir):
    from a2gen_hf.training.residual_fit import zero_learned_paths

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    torch.manual_seed(0)
    model = create_model("a2gen-iag", tokenizer, data, **SPARSE)
    head = model.occurrence_head
    context = torch.randn(4, model.occurrence_head.wide.input_size + 8)
    before = head(context).detach()
    action = tokenizer.convert_tokens_to_ids(tokenizer.action_names[1])
    zero_learned_paths(head, [action])
    after = head(context).detach()
    torch.testing.assert_close(after[:, action], head.wide(context)[:, action].detach())
    others = [column for column in range(after.shape[1]) if column != action]
    torch.testing.assert_close(after[:, others], before[:, others])


def test_after_training_each_action_the_network_does_not_raise_goes_back(simulated_data_dir):
    """give_back_to_the_regression: per ranked action, the kept model's validation AUC is at least the regression's,
    and the actions given back are exactly the regression's (their output rows at zero)."""
    from accelerate import Accelerator

    from a2gen_hf.training.give_back import give_back_to_the_regression
    from a2gen_hf.training.residual_fit import zero_learned_paths

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer)
    torch.manual_seed(3)
    with torch.no_grad():  # a "trained" network: random learned paths, better or worse per action
        model.occurrence_head.output.weight.normal_(0, 0.5)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    settings = TrainingSettings(output_dir="unused", eval_batch_size=128)
    regression = _residual_start(data, tokenizer)
    zero_learned_paths(regression.occurrence_head, list(range(model.config.vocab_size)))

    def aucs(m):
        return validation_mean_auc(m, data["validation"], collator, settings, Accelerator(cpu=True))["auc"]

    before, alone = aucs(model), aucs(regression)
    given_back = give_back_to_the_regression(model, tokenizer, data["validation"])
    after = aucs(model)
    assert given_back == [name for name in before if before[name] <= alone[name]]
    assert 0 < len(given_back) < len(before)  # this seed gives some actions back and keeps the others
    for name in after:
        expected = alone[name] if name in given_back else before[name]
        assert after[name] == pytest.approx(expected, abs=1e-9) and after[name] >= alone[name] - 1e-9


def _validation_timing(model, data, tokenizer) -> dict:
    """timing_mae (the measure of the reports) of the model's expected times on the validation split."""
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    arrays = predict_dataloader(model, DataLoader(data["validation"], batch_size=1024, collate_fn=collator))
    config = model.config
    return timing_mae(arrays["expected_times"], arrays["labels"], arrays["label_times"], arrays.get("label_time_mask"),
                      config.action_names, config.start_action, config.end_action)


def _time_mae(model, data, tokenizer):
    return _validation_timing(model, data, tokenizer)["mean_mae"]


def _time_maes(model, data, tokenizer):
    return _validation_timing(model, data, tokenizer)["mae"]


def test_trained_times_no_better_than_the_median_go_back(simulated_data_dir):
    """give_back_the_median_times: time heads whose validation MAE is above the start's median go back to it (weights
    0, bias the train median), and the validation MAE is then the median's."""
    from a2gen_hf.training.give_back import give_back_the_median_times

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer)
    heads = model.generator.heads.time
    median = heads.bias.item()
    constant = _time_mae(model, data, tokenizer)
    with torch.no_grad():  # "trained" times: noise around the median
        torch.manual_seed(1)
        heads.weight.normal_(0, 1.0)
    assert _time_mae(model, data, tokenizer) > constant

    assert give_back_the_median_times(model, tokenizer, data) == model.config.action_names[1:]  # all but start
    assert not heads.weight.any() and heads.bias.item() == pytest.approx(median)
    assert _time_mae(model, data, tokenizer) == pytest.approx(constant)


def _slower_train(data, factor: float = 50.0):
    """The data with every train time `factor` times later (orders kept): its medians far from validation's times, so
    that times fitted to the real data are clearly better on validation than those medians."""
    slower = data["train"].map(lambda row: {"action_seconds": [factor * t for t in row["action_seconds"]]})
    return {"train": slower, "validation": data["validation"]}


def test_trained_times_clearly_better_than_the_median_are_kept(simulated_data_dir):
    """give_back_the_median_times keeps time heads that validate clearly better than the median, exactly as they
    were: here the train split's times are slowed 50 times, so its median is far from validation's times and the
    model's times (the real median) beat it by many standard errors."""
    from a2gen_hf.training.give_back import give_back_the_median_times

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer)
    heads = model.generator.heads.time
    state = {name: tensor.clone() for name, tensor in heads.state_dict().items()}
    assert give_back_the_median_times(model, tokenizer, _slower_train(data)) == []
    for name, tensor in heads.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_trained_times_better_than_the_median_by_less_than_the_noise_go_back(simulated_data_dir):
    """Trained times whose validation MAE is below the median's, but by less than the validation examples' noise,
    go back to the median (on a small log such a gain is as likely reversed on test)."""
    from a2gen_hf.training.give_back import _validation_time_errors, clearly_lower, give_back_the_median_times

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer)
    heads = model.generator.heads.time
    median = heads.bias.item()
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    constant = _validation_time_errors(model, data["validation"], collator, 1024)
    errors = {}
    for shift in (-0.2, -0.1, -0.05, 0.05, 0.1, 0.2):  # the mean over actions of each one's MAE: not the pooled median's
        with torch.no_grad():
            heads.bias.fill_(median + shift)
        errors[shift] = _time_mae(model, data, tokenizer)
    best = min(errors, key=errors.get)
    with torch.no_grad():
        heads.bias.fill_(median + best)
    shifted = _validation_time_errors(model, data["validation"], collator, 1024)
    # The test needs a shift that lowers the MAE, but not clearly (this data has one).
    assert errors[best] < _time_mae_of(constant)
    assert not clearly_lower(list(shifted.values()), list(constant.values()))
    assert give_back_the_median_times(model, tokenizer, data) == model.config.action_names[1:]
    assert heads.bias.item() == pytest.approx(median) and not heads.weight.any()


def _time_mae_of(errors: dict) -> float:
    return float(np.mean([values.mean() for values in errors.values() if len(values)]))


def test_clearly_lower_asks_for_more_than_the_noise():
    """clearly_lower: the mean over actions of the paired differences plus 1.645 standard errors below 0."""
    from a2gen_hf.training.give_back import clearly_lower

    rng = np.random.default_rng(0)
    median = rng.exponential(1.0, 400)
    assert clearly_lower([median - 0.3], [median])  # every example better: no noise
    noisy = median + rng.normal(-0.02, 1.0, 400)  # lower on average, by far less than the spread
    assert noisy.mean() < median.mean() and not clearly_lower([noisy], [median])
    # The standard error: 400 differences of spread 1 give about 0.05; a mean of -0.1 is clear, -0.05 is not.
    for shift, clear in ((-0.1, True), (-0.05, False)):
        differences = rng.standard_normal(400)
        differences = (differences - differences.mean()) / differences.std(ddof=1) + shift
        assert clearly_lower([median + differences], [median]) == clear
    # Several actions: the mean of their MAE differences, errors combined; empty actions are left out.
    assert clearly_lower([median - 0.3, median[:50] + 0.1, np.array([])], [median, median[:50], np.array([])])
    assert not clearly_lower([median - 0.3, median[:50] + 0.5], [median, median[:50]])
    assert clearly_lower([np.array([])], [np.array([])])  # nothing to judge by: the trained times stay
    assert not clearly_lower([np.array([0.1])], [np.array([5.0])])  # one example: no noise estimate, never clear


def test_validation_time_errors_average_to_the_reported_mae(simulated_data_dir):
    from a2gen_hf.training.give_back import _validation_time_errors

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer, time_per_action=True)
    with torch.no_grad():
        model.generator.heads.time.weight.normal_(0, 0.3)
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    errors = _validation_time_errors(model, data["validation"], collator, 64)
    maes = _time_maes(model, data, tokenizer)
    assert set(errors) == set(maes)
    for name, values in errors.items():
        assert float(values.mean()) == pytest.approx(maes[name], rel=1e-6)


def test_times_per_action_start_at_each_actions_median_and_go_back_per_action(simulated_data_dir):
    """With ``time_per_action`` the start's times are each action's own train median (so its validation MAE is the
    constant-median rule's, per action), and after training only the actions whose trained times validate no better
    than that median, by more than the noise, go back to it, row by row; the others keep their trained rows exactly,
    and IAG's auxiliary heads (CAM_gen's input) are left as trained."""
    from a2gen_hf.training.give_back import give_back_the_median_times
    from a2gen_hf.training.simple_baselines import ActionTargets

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer, time_per_action=True)
    medians = ActionTargets.from_dataset(data["train"], tokenizer).median_times()
    head = model.generator.heads.time
    assert head.out_features == model.config.vocab_size and not head.weight.any()
    torch.testing.assert_close(head.bias, torch.as_tensor(medians, dtype=head.bias.dtype))
    validation = ActionTargets.from_dataset(data["validation"], tokenizer)
    names = model.config.action_names
    constant = _time_maes(model, data, tokenizer)
    for action, name in enumerate(names[1:], start=2):
        known = validation.known[:, action]
        assert constant[name] == pytest.approx(abs(validation.times[known, action] - medians[action]).mean(), abs=1e-6)

    # Judged against the medians of train times slowed 50 times: the "trained" rows (the real medians) are clearly
    # better, except one made worse than even those.
    slower = _slower_train(data)
    slow_medians = ActionTargets.from_dataset(slower["train"], tokenizer).median_times()
    worse, better = names[1], names[3]  # names[2] (follow) has too few validation times to be clear either way
    row = names.index(better) + 1
    with torch.no_grad():
        head.bias[names.index(worse) + 1] = float(slow_medians[names.index(worse) + 1]) + 5.0
        model.generator.aux_heads.time.weight.normal_(0, 0.5)
    aux = model.generator.aux_heads.time.weight.clone()
    kept_bias = head.bias[row].item()

    given_back = give_back_the_median_times(model, tokenizer, slower)
    assert worse in given_back and better not in given_back
    assert head.bias[names.index(worse) + 1].item() == pytest.approx(float(slow_medians[names.index(worse) + 1]))
    assert head.bias[row].item() == kept_bias
    assert torch.equal(model.generator.aux_heads.time.weight, aux)


def test_give_back_to_the_start_applies_the_ranking_rule_only_after_a_fit(simulated_data_dir):
    """give_back_to_the_start: without ``ranking`` the learned paths are left as trained (the plain residual start
    trains them with the wide path); a baseline without A2Gen's time heads keeps its times."""
    from a2gen_hf.training.give_back import give_back_the_median_times, give_back_to_the_start

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer)
    with torch.no_grad():
        model.occurrence_head.output.weight.normal_(0, 0.5)
    output = model.occurrence_head.output.weight.clone()
    result = give_back_to_the_start(model, tokenizer, data, ranking=False)
    assert result["regression_for"] == [] and result["median_times_for"] == model.config.action_names[1:]
    assert torch.equal(model.occurrence_head.output.weight, output)
    no_validation = {"train": data["train"]}
    assert give_back_to_the_start(model, tokenizer, no_validation, ranking=True) == {
        "median_times_for": [], "regression_for": []
    }
    assert torch.equal(model.occurrence_head.output.weight, output)
    mmoe = create_model("mmoe", tokenizer, data, hidden_size=16, id_embedding_size=16)
    assert give_back_the_median_times(mmoe, tokenizer, data) == []


def test_train_split_inputs_leave_each_examples_own_outcome_out(simulated_data_dir):
    """On the train split the head's inputs are read as training reads them (the popularity features leave the
    example's own outcome out), on validation as evaluation does; the model's mode is restored."""
    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer).eval()
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    rows = data["train"].select(range(64))
    as_trained = read_head_inputs(model, rows, collator, train=True)
    as_evaluated = read_head_inputs(model, rows, collator, train=False)
    assert as_trained.contexts.shape == as_evaluated.contexts.shape and len(as_trained.occurs) == 64
    assert not torch.equal(as_trained.contexts, as_evaluated.contexts)  # the own outcomes are left out
    assert not model.training


def test_reading_the_train_split_changes_no_statistics_and_no_result_by_batch_size(simulated_data_dir):
    """Reading the head's inputs in training mode leaves the running feature statistics as they were (before, every
    batch updated them: the saved model's standardisers counted the train split twice, and each batch was
    standardised with different statistics, so the contexts depended on the batch size)."""
    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    model = _residual_start(data, tokenizer).eval()
    collator = A2GenDataCollator.from_config(model.config, tokenizer)
    rows = data["train"].select(range(64))
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    whole = read_head_inputs(model, rows, collator, train=True, batch_size=64)
    in_eights = read_head_inputs(model, rows, collator, train=True, batch_size=8)
    assert any(name.endswith("standardizer.count") for name in before)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    torch.testing.assert_close(whole.contexts, in_eights.contexts)
    assert not any(getattr(module, "frozen", False) for module in model.modules())  # thawed again


def test_refusals_name_what_is_missing(simulated_data_dir):
    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    with pytest.raises(ValueError, match=r"--wide-frozen is off while what needs it is on .*switch them on "
                                         r"\(--wide-warm-start --wide-residual --wide-frozen\)"):
        check_wide_start(True, True, False, True)
    model = create_model("a2gen-iag", tokenizer, data, hidden_size=16, id_embedding_size=16)
    with pytest.raises(ValueError, match="occurrence_head=True and wide_path=True"):
        fit_residual_paths(model, tokenizer, data)
    model = _residual_start(data, tokenizer)
    with pytest.raises(ValueError, match="no validation split"):
        fit_residual_paths(model, tokenizer, {"train": data["train"]})


def test_train_with_wide_residual_fit_from_the_command_line(simulated_data_dir, tmp_path):
    """`a2gen train --wide-residual-fit` with the residual start: the run saves a model; without --wide-frozen the
    flag is refused by name (exit 2)."""
    from a2gen_hf.cli import main

    base = ["train", "--data", str(simulated_data_dir), "--epochs", "1", "--hidden-size", "8",
            "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress", "--count-features",
            "--popularity-features", "--occurrence-head", "--wide-path", "--occurrence-paths-input", "extra_only",
            "--wide-warm-start", "--wide-residual", "--eval-before-training", "--select-by", "mean_auc",
            "--wide-residual-fit"]
    assert main([*base, "--output", str(tmp_path / "refused")]) == 2
    assert not (tmp_path / "refused" / "model").exists()
    assert main([*base, "--wide-frozen", "--output", str(tmp_path / "fitted")]) == 0
    assert (tmp_path / "fitted" / "model" / "config.json").exists()


def test_wide_share_scale_reaches_the_regression_from_the_command_line(simulated_data_dir, tmp_path, monkeypatch, capsys):
    """`--wide-share-scale 10`: the wide start's regression tries the plain fit and the propensities 10 times less
    shrunk; refused by name without --wide-warm-start or below 1 (exit 2), by train and by compare."""
    from a2gen_hf.cli import main
    from a2gen_hf.training import simple_baselines

    fitted_with = []
    original_fit = simple_baselines.CountFeatureLogisticRegression.fit

    def recording_fit(self, *args, **kwargs):
        fitted_with.append(self.share_scales)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(simple_baselines.CountFeatureLogisticRegression, "fit", recording_fit)
    base = ["train", "--data", str(simulated_data_dir), "--epochs", "1", "--hidden-size", "8",
            "--num-attention-heads", "2", "--id-embedding-size", "8", "--no-progress", "--count-features",
            "--popularity-features", "--occurrence-head", "--wide-path", "--eval-before-training",
            "--select-by", "mean_auc"]
    assert main([*base, "--wide-share-scale", "10", "--output", str(tmp_path / "refused")]) == 2
    assert "switch them on (--wide-warm-start), or the wide start off altogether" in capsys.readouterr().err
    assert main([*base, "--wide-warm-start", "--wide-share-scale", "0.5", "--output", str(tmp_path / "low")]) == 2
    assert "must be a finite number >= 1" in capsys.readouterr().err
    assert fitted_with == []
    assert main([*base, "--wide-warm-start", "--wide-residual", "--wide-share-scale", "10",
                 "--output", str(tmp_path / "scaled")]) == 0
    assert fitted_with == [(1.0, 10.0)]
    compare = ["compare", "--data", str(simulated_data_dir), "--models", "", "--simple", "logreg",
               "--wide-share-scale", "10", "--output", str(tmp_path / "compare")]
    assert main(compare) == 2
    assert "switch them on (--wide-warm-start), or the wide start off altogether" in capsys.readouterr().err


class _ToyHead(torch.nn.Module):
    """A fixed wide path plus a learned hidden layer on `(n, 2)` contexts: the interface fit_learned_paths fits."""

    def __init__(self, vocab_size: int, wide_weight: torch.Tensor):
        super().__init__()
        self.wide = torch.nn.Linear(2, vocab_size)
        with torch.no_grad():
            self.wide.weight.copy_(wide_weight)
            self.wide.bias.zero_()
        self.wide.requires_grad_(False)
        self.linear = None
        self.hidden = torch.nn.Linear(2, 16)
        self.output = torch.nn.Linear(16, vocab_size)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        return self.wide(contexts) + self.output(torch.relu(self.hidden(contexts)))


def _toy_inputs(rng: np.random.Generator, users: int, per_user: int):
    """Action 2 happens where x0 * x1 > 0.3 (only a network finds it), action 3 where x0 > 1 (the wide path has it)."""
    from a2gen_hf.training.residual_fit import HeadInputs

    contexts = rng.normal(size=(users * per_user, 2))
    occurs = np.zeros((len(contexts), 5), dtype=bool)
    occurs[:, 2] = contexts[:, 0] * contexts[:, 1] > 0.3
    occurs[:, 3] = (contexts[:, 0] > 1.0) ^ (rng.random(len(contexts)) < 0.05)
    return HeadInputs(torch.tensor(contexts, dtype=torch.float32), torch.tensor(occurs),
                      torch.arange(users).repeat_interleave(per_user))


def test_cross_fitting_keeps_what_holds_up_on_held_out_users_only():
    """The fit adds to an action whose signal the fixed regression misses (kept) and only noise to one the regression
    already ranks (not confirmed on held-out users, so given back); the halves never split a user."""
    from types import SimpleNamespace

    from a2gen_hf.training.residual_fit import cross_fitted_actions, fit_learned_paths, halves_by_user

    vocabulary = SimpleNamespace(action_names=["start", "signal", "ranked", "end"], start_action="start",
                                 end_action="end")
    rng = np.random.default_rng(0)
    train, validation = _toy_inputs(rng, 100, 20), _toy_inputs(rng, 60, 20)
    first, second = halves_by_user(validation, seed=0)
    assert len(first) + len(second) == 1200
    assert not set(validation.users[first].tolist()) & set(validation.users[second].tolist())
    wide = torch.zeros(5, 2)
    wide[3, 0] = 4.0  # the regression ranks action 3 as well as anything can

    torch.manual_seed(0)
    head = _ToyHead(5, wide)
    assert cross_fitted_actions(head, train, validation, vocabulary, weight_decays=(1e-4,), rounds=5) == {2}
    result = fit_learned_paths(head, train, validation, vocabulary, weight_decays=(1e-4,), rounds=5, cross_fit=True)
    assert result["regression_kept_for"] == ["ranked"] and result["fitted"] > result["start"]
    assert head.output.weight[2].any() and not head.output.weight[3].any()


def test_halves_by_example_without_users():
    from a2gen_hf.training.residual_fit import HeadInputs, halves_by_user

    inputs = HeadInputs(torch.zeros(7, 2), torch.zeros(7, 5, dtype=torch.bool))
    first, second = halves_by_user(inputs, seed=1)
    assert sorted([*first, *second]) == list(range(7)) and len(first) == 3


def test_keep_z_is_checked_before_any_fit():
    from types import SimpleNamespace

    from a2gen_hf.training.residual_fit import fit_learned_paths

    rng = np.random.default_rng(0)
    inputs = _toy_inputs(rng, 4, 5)
    vocabulary = SimpleNamespace(action_names=["start", "a", "b", "end"], start_action="start", end_action="end")
    for keep_z in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="keep_z=.* must be a finite number >= 0"):
            fit_learned_paths(_ToyHead(5, torch.zeros(5, 2)), inputs, inputs, vocabulary, keep_z=keep_z)


def test_an_action_validation_cannot_judge_goes_back_and_no_fit_lists_every_action():
    """An action without positives in validation kept its fit unchecked (the plain rule skipped actions with one
    class; cross-fitting gave it back); when no fit beats the start, regression_kept_for said [] though the regression
    is kept for every action."""
    from types import SimpleNamespace

    from a2gen_hf.training.residual_fit import fit_learned_paths

    vocabulary = SimpleNamespace(action_names=["start", "signal", "ranked", "end"], start_action="start",
                                 end_action="end")
    rng = np.random.default_rng(0)
    train, validation = _toy_inputs(rng, 100, 20), _toy_inputs(rng, 60, 20)
    validation.occurs[:, 3] = False  # no "ranked" in validation: nothing there to judge its fit by
    wide = torch.zeros(5, 2)
    wide[3, 0] = 4.0
    torch.manual_seed(0)
    head = _ToyHead(5, wide)
    result = fit_learned_paths(head, train, validation, vocabulary, weight_decays=(1e-4,), rounds=5)
    assert "ranked" in result["regression_kept_for"] and not head.output.weight[3].any()
    assert head.output.weight[2].any()  # the judged action keeps its fit
    torch.manual_seed(0)
    nothing = fit_learned_paths(_ToyHead(5, wide), train, validation, vocabulary, weight_decays=())
    assert nothing["fitted"] is None and nothing["regression_kept_for"] == ["signal", "ranked"]


def test_an_action_without_both_classes_in_training_goes_back_to_the_regression():
    """An action that never happens in the train split has nothing to learn: the fit gives it back to the regression
    whatever its validation AUC does, and says why (before: a fit trained on all-negative labels was kept because it
    raised the AUC over a few validation positives)."""
    from types import SimpleNamespace

    from a2gen_hf.training.residual_fit import fit_learned_paths

    vocabulary = SimpleNamespace(action_names=["start", "signal", "ranked", "end"], start_action="start",
                                 end_action="end")
    rng = np.random.default_rng(0)
    train, validation = _toy_inputs(rng, 100, 20), _toy_inputs(rng, 60, 20)
    train.occurs[:, 3] = False  # "ranked" never happens in training; validation still holds it
    torch.manual_seed(0)
    head = _ToyHead(5, torch.zeros(5, 2))
    result = fit_learned_paths(head, train, validation, vocabulary, weight_decays=(1e-4,), rounds=5)
    assert result["one_class_in_training"] == ["ranked"] and "ranked" in result["regression_kept_for"]
    assert not head.output.weight[3].any() and not head.output.bias[3].any()
    assert head.output.weight[2].any()  # the action with both classes keeps its fit
    train.occurs[:, 3] = True  # in every training example: nothing to learn either
    torch.manual_seed(0)
    always = fit_learned_paths(_ToyHead(5, torch.zeros(5, 2)), train, validation, vocabulary, weight_decays=(1e-4,),
                               rounds=5)
    assert always["one_class_in_training"] == ["ranked"] and "ranked" in always["regression_kept_for"]


def test_a_time_row_without_validation_times_goes_back_to_the_median(simulated_data_dir):
    """With ``time_per_action`` an action whose time validation cannot judge (no validation time at all) goes back to
    its train median: trained times are kept only on evidence (before: "nothing to judge by" kept them, so a time
    row trained on no example of the action survived). The same row with validation times clearly better is kept."""
    from a2gen_hf.training.give_back import give_back_the_median_times

    data, tokenizer, _ = load_data_dir(simulated_data_dir)
    names = tokenizer.action_names
    better = names[3]
    action = names.index(better) + 1
    slower = _slower_train(data)
    slow_median = float(ActionTargets.from_dataset(slower["train"], tokenizer).median_times()[action])

    def without_action(row):
        kept = [(a, t) for a, t in zip(row["action_ids"], row["action_seconds"]) if a != action]
        return {"action_ids": [a for a, _ in kept], "action_seconds": [t for _, t in kept]}

    unjudged = {"train": slower["train"], "validation": data["validation"].map(without_action)}
    for judged, kept in ((slower, True), (unjudged, False)):
        model = _residual_start(data, tokenizer, time_per_action=True)  # its rows: the real medians, "trained"
        head = model.generator.heads.time
        trained = head.bias[action].item()
        given_back = give_back_the_median_times(model, tokenizer, judged)
        assert (better not in given_back) == kept
        assert head.bias[action].item() == pytest.approx(trained if kept else slow_median)
