"""ferkit.settings: train.py's typed settings, in process (no TensorFlow): defaults, ranges, older folders."""
import contextlib
import dataclasses
import io
import json
import os

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from ferkit import backends, cli
from ferkit.settings import TrainSettings, add_options, flag, from_args, options


def parse(*argv):
    """argv -> TrainSettings through the same parser train.py builds; SystemExit(2) with one stderr line if refused."""
    parser = cli.ArgumentParser("test")
    add_options(parser)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return from_args(parser, parser.parse_args(list(map(str, argv))))
        except SystemExit as e:
            assert e.code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
            raise ValueError(err.getvalue()) from None


def test_every_option_has_help_and_a_default_of_its_type():
    fields = {f.name: f for f in dataclasses.fields(TrainSettings)}
    assert set(fields) - {f.name for f in options()} == {"data_size", "data_fingerprint"}
    for f in options():
        assert f.metadata["help"], f.name
        assert f.default is None or isinstance(f.default, f.type), f.name
    assert parse() == TrainSettings()
    assert TrainSettings().lr == 1e-3 and TrainSettings(optimizer="sgd").lr == 0.05


@pytest.mark.parametrize("argv, phrase", [
    (("--epochs", 0), "--epochs must be at least 1, got 0"),
    (("--lr", "1e-320"), "--lr must be a positive number from 1e-10 to 1e4"),
    (("--lr", "inf"), "--lr must be a positive number"),
    (("--warmup-epochs", "1e300"), "--warmup-epochs must be at most --epochs (30), got 1e+300"),
    (("--warmup-epochs", "nan"), "--warmup-epochs must be 0 or more, got nan"),
    (("--momentum", 1), "--momentum must be in [0, 1), got 1.0"),
    (("--label-smoothing", -0.1), "--label-smoothing must be in [0, 1)"),
    (("--seed", 2 ** 32), "--seed must be in 0..4294967295"),
    (("--ema", 1), "--ema must be a decay in [0, 1)"),
    (("--labels", "ferplus", "--teacher", "t.npz"), "--teacher distils FER-2013 labels"),
    (("--refit", "--ema", 0.99), "--refit takes neither --teacher"),
    (("--optimizer", "rmsprop"), "invalid choice: 'rmsprop'"),
    (("--distill", 0.7), "--distill weighs --teacher's probabilities"),
    (("--fer2013-weight", 0.5), "--fer2013-weight applies to --labels both"),
])
def test_out_of_range_values_are_one_line_errors(argv, phrase):
    with pytest.raises(ValueError, match="^error: ") as refused:
        parse(*argv)
    assert phrase in str(refused.value)


def test_config_json_is_the_settings_and_older_folders_still_match():
    s = parse("--optimizer", "sgd", "--ema", 0.999, "--labels", "both")
    s.data_size = 28709
    recorded = json.loads(json.dumps(s.to_json()))
    assert TrainSettings.from_json(recorded) == s and s.changed_from(recorded) == []
    # A folder written before most fields existed, as the shipped ones were: they count as their defaults.
    for name in backends.shipped_models():
        with open(os.path.join(backends.PRETRAINED, name, "config.json")) as f:
            old = json.load(f)["settings"]
        again = TrainSettings.from_json(old)
        assert again.changed_from(old) == [] and again.epochs == old["epochs"], name
    old = {"epochs": 45, "lr": 0.001, "data_size": 28709, "distill": None, "fer2013_weight": None}
    assert TrainSettings(epochs=45, data_size=28709).changed_from(old) == []
    assert TrainSettings(epochs=45, data_size=28709, bf16=True).changed_from(old) == [("bf16", False)]
    assert TrainSettings(epochs=45, data_size=100, patience=3).changed_from(old) == [("data_size", 28709)]
    new = TrainSettings(epochs=45, data_size=28709, data_fingerprint="0123456789abcdef")
    assert new.changed_from(old) == []  # a folder older than the fingerprint: the size alone
    assert new.changed_from(dict(old, data_fingerprint="fedcba9876543210")) == [("data_fingerprint", "fedcba9876543210")]


NUMBERS = st.one_of(st.integers(-2 ** 40, 2 ** 40), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["", "x", "1e", "--", "0x10", "1_000", " 3", "٣"]))


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([f for f in options() if f.type in (int, float)]), NUMBERS), max_size=4))
def test_any_numbers_give_valid_settings_or_a_one_line_error(pairs):
    argv = [part for f, value in pairs for part in (flag(f), str(value))]
    try:
        s = parse(*argv)
    except ValueError as e:
        assert str(e).startswith("error: ")
        return
    assert s.problems() == []
    for f in options():
        value = getattr(s, f.name)
        assert value is None or f.metadata["valid"] is None or f.metadata["valid"](value)
