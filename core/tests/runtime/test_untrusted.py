"""The bounded JSON and TOML readers every difftk reader goes through: depth and size are checked
before the parser recurses, non-finite numbers are refused, and any text gives a value or one
DifftkError line."""

import json
import math
import tomllib

import pytest
from difftk.errors import DifftkError
from difftk.runtime.untrusted import (
    MAX_DEPTH,
    json_within_depth,
    read_json,
    read_toml,
    toml_within_depth,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

FAST = settings(max_examples=60, deadline=None)

#: JSON values as difftk files hold them: finite numbers, strings with brackets and escapes in them
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 60), 2 ** 60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab"\\[]{}\n é'), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


def _depth(value):
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@FAST
@given(json_values)
def test_read_json_agrees_with_json_within_the_bounds(value):
    text = json.dumps(value)
    assert json_within_depth(text, _depth(value))
    assert _depth(value) == 0 or not json_within_depth(text, _depth(value) - 1)
    assert read_json(text, max_depth=max(_depth(value), 1)) == json.loads(text)


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 100_000])
def test_depth_is_checked_before_parsing(depth):
    text = '{"a": ' * depth + "1" + "}" * depth
    if depth <= MAX_DEPTH:
        assert read_json(text) is not None
    else:
        with pytest.raises(DifftkError, match=f"nested more than {MAX_DEPTH} levels deep"):
            read_json(text)


@pytest.mark.parametrize("text, said", [
    ('{"step": Infinity}', "Infinity is not a number"), ("[NaN]", "NaN is not a number"),
    ("[-1e999]", "beyond the range of a float"), ('"' + "\\u00e9" * 3, "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"), ("[" * 10 + "}" * 10, "not JSON"), ("1" * 5000, "not JSON"),
])
def test_what_json_refuses(text, said):
    with pytest.raises(DifftkError, match=said):
        read_json(text, what="the record")


def test_size_is_checked_first():
    with pytest.raises(DifftkError, match="is 101 bytes long; at most 100"):
        read_json(" " * 100 + "1", max_bytes=100)


@FAST
@given(st.text(alphabet=st.sampled_from('[]{}"\\:,1a \n'), max_size=200) | st.binary(max_size=60))
@example("[" * 50_000)
@example('"' + '\\"' * 50_000)  # an unclosed string of escaped quotes: linear, not quadratic
def test_any_text_is_a_value_or_one_line(text):
    try:
        read_json(text)
    except DifftkError as err:
        assert "\n" not in str(err)


def test_toml_depth_skips_strings_and_comments():
    text = 'a = "[[[["\nb = \'[[[[\'\n# [[[[[[\nc = """\n[[[[\n"""\n[[t.u]]\nx = [[1]]\n'
    assert toml_within_depth(text, 2) and not toml_within_depth(text, 1)
    assert read_toml(text, max_depth=2) == tomllib.loads(text)


@pytest.mark.parametrize("text, said", [
    ("a = " + "[" * 5000 + "]" * 5000, "nested more than"),
    ("x = nan", "x = nan: give a finite number"), ("[s]\nv = [1.0, -inf]", "s.v.1 = -inf"),
    ("a = [", "not valid TOML"),
])
def test_what_toml_refuses(text, said):
    with pytest.raises(DifftkError, match=said):
        read_toml(text)


@FAST
@given(st.text(alphabet=st.sampled_from('[]{}"\'#=a1.\n '), max_size=200))
def test_any_toml_is_a_table_or_one_line(text):
    try:
        data = read_toml(text)
    except DifftkError as err:
        assert "\n" not in str(err)
    else:
        assert isinstance(data, dict)
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in data.values())


def test_infinities_are_read_only_when_asked_and_nan_never():
    """Other libraries' configs hold ±Infinity (json.dumps of ±inf); NaN is refused either way."""
    text = '{"a": -Infinity, "b": Infinity, "c": 1.5}'
    with pytest.raises(DifftkError, match="not a number difftk writes"):
        read_json(text)
    assert read_json(text, infinities=True) == {"a": float("-inf"), "b": float("inf"), "c": 1.5}
    with pytest.raises(DifftkError, match="NaN is not a number"):
        read_json('{"a": NaN}', infinities=True)
    with pytest.raises(DifftkError, match="beyond the range"):
        read_json('{"a": 1e999}', infinities=True)
