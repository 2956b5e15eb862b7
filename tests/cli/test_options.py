"""The schema's parsers behind every option (command line and config files alike): any text gives a
value or a UsageError naming the option."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from learnkit.errors import UsageError
from learnkit.jobs.config import lr_value, parse_option


def parse_lr(text):
    return lr_value(parse_option("lr", text))


def parse_wd(text):
    return lr_value(parse_option("wd", text), allow_zero=True)


def parse_device(text):
    return parse_option("device", text)


def parse_fraction(text):
    return parse_option("valid_pct", text)


def parse_moms(text):
    return parse_option("moms", text, "fit-one-cycle")


positive = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1e-3", 1e-3),
        (" 0.01 ", 0.01),
        ("1e-5:1e-3", slice(1e-5, 1e-3)),
        (":1e-3", slice(None, 1e-3)),
        ("1e-3:1e-3", slice(1e-3, 1e-3)),
    ],
)
def test_parse_lr_examples(text, want):
    assert parse_lr(text) == want


@pytest.mark.parametrize("text", ["", "abc", "0", "-1e-3", "nan", "inf", "1e-3:", "1:2:3", "1e-3:1e-5", "::"])
def test_parse_lr_refuses_garbage(text):
    with pytest.raises(UsageError, match="--lr"):
        parse_lr(text)


def test_parse_wd_allows_zero_and_defaults_as_values():
    assert parse_wd("0") == 0.0
    assert parse_wd(0.01) == 0.01
    assert parse_lr(3e-3) == 3e-3
    assert parse_lr(slice(None, 1e-3)) == slice(None, 1e-3)


@given(st.text())
def test_parse_lr_total(text):
    try:
        value = parse_lr(text)
    except UsageError:
        return
    numbers = [value] if isinstance(value, float) else [v for v in (value.start, value.stop) if v is not None]
    assert numbers and all(math.isfinite(v) and v > 0 for v in numbers)


def _numbers(value) -> list[float]:
    return [value] if isinstance(value, float) else [v for v in (value.start, value.stop) if v is not None]


@given(st.text() | st.sampled_from(["nan", "-0", "1e-3:nan", "inf:1", "0:0.1"]))
def test_parse_wd_total(text):
    try:
        value = parse_wd(text)
    except UsageError:
        return
    numbers = _numbers(value)
    assert numbers and all(math.isfinite(v) and v >= 0 for v in numbers)


@pytest.mark.parametrize(
    "text", ["", "abc", "-1e-3", "nan", "NaN", "inf", "-inf", "1e-3:nan", "nan:1", "1:0.5"]
)
def test_parse_wd_refuses_garbage(text):
    with pytest.raises(UsageError, match="--wd"):
        parse_wd(text)


@given(positive)
def test_parse_lr_round_trip_float(x):
    assert parse_lr(repr(x)) == x


@given(positive, positive)
def test_parse_lr_round_trip_slice(a, b):
    low, high = min(a, b), max(a, b)
    assert parse_lr(f"{low!r}:{high!r}") == slice(low, high)
    assert parse_lr(f":{high!r}") == slice(None, high)


@pytest.mark.parametrize(
    ("text", "want"), [("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1")]
)
def test_parse_device(text, want):
    assert parse_device(text) == want


@given(st.text())
def test_parse_device_total(text):
    try:
        value = parse_device(text)
    except UsageError:
        return
    assert value in {"auto", "cpu", "mps", "cuda"} or value.startswith("cuda:")


@pytest.mark.parametrize("text", ["0", "1", "1.5", "-0.2", "nan", "inf", "x", ""])
def test_parse_fraction_refuses_garbage(text):
    with pytest.raises(UsageError, match="--valid-pct"):
        parse_fraction(text)


@given(st.text())
def test_parse_fraction_total(text):
    try:
        value = parse_fraction(text)
    except UsageError:
        return
    assert 0 < value < 1


def test_parse_moms():
    assert parse_moms("0.95,0.85") == (0.95, 0.85)
    assert parse_moms("0.9:0.8") == (0.9, 0.8)
    assert parse_moms((0.95, 0.85)) == (0.95, 0.85)


@pytest.mark.parametrize(
    "text", ["0.9", "1.2,0.8", "a,b", "0.9,0.8,0.7", "", "nan,0.85", "0.95,nan", "-0.1,0.8"]
)
def test_parse_moms_refuses_garbage(text):
    with pytest.raises(UsageError, match="--moms"):
        parse_moms(text)


@given(st.text())
def test_parse_moms_total(text):
    try:
        high, low = parse_moms(text)
    except UsageError:
        return
    assert 0 <= high < 1 and 0 <= low < 1
