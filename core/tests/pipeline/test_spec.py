"""A pipeline TOML file is untrusted: its depth and size are bounded before parsing, its structure
([difftk] a table, format a whole number, sections tables, names and options of the right types)
checked, and any text gives a spec or one SpecError line."""

import pytest
from difftk.errors import SpecError
from difftk.pipeline.spec import PipelineSpec
from hypothesis import example, given, settings
from hypothesis import strategies as st

GOOD = '[difftk]\nformat = 1\n\n[schedule]\nname = "linear"\n\n[schedule.options]\nT = 50\n\n[sampler]\nname = "ddim"\n'


def test_a_written_spec_reads_back():
    spec = PipelineSpec.from_toml(GOOD)
    assert spec["schedule"].options_dict == {"T": 50} and PipelineSpec.from_toml(spec.to_toml()) == spec


@pytest.mark.parametrize("text, said", [
    ("difftk = 1\n", "difftk = 1 must be a section: write \\[difftk\\] with format = 1"),
    ('[difftk]\nformat = "1"\n', "format = '1' is not a whole number: write format = 1"),
    ("[difftk]\nformat = 2\n", "pipeline format 2 is not supported"),
    ("[difftk]\nformat = true\n", "format = True is not a whole number"),
    ("schedule = 3\n", "section \\[schedule\\] needs a name"),
    ('[schedule]\nname = "linear"\noptions = 3\n', "\\[schedule.options\\] must be a table"),
    ('[schedule]\nname = "linear"\nplugin = 3\n', "\\[schedule\\] plugin = 3 must be a string"),
    ('[schedule]\nname = "linear"\n[schedule.options]\nT = {a = 1}\n', "T = \\{'a': 1\\} is not an option value"),
    ("a = " + "[" * 5000 + "]" * 5000, "is nested more than 32 levels deep"),
    ("x = nan\n", "x = nan: give a finite number"), ("[mystery]\n", "unknown section \\[mystery\\]"),
    ("a = [", "is not valid TOML"),
])
def test_structure_is_checked(text, said):
    with pytest.raises(SpecError, match=said) as err:
        PipelineSpec.from_toml(text, source="p.toml")
    assert "\n" not in str(err.value) and str(err.value).startswith("p.toml")


keys = st.sampled_from(["difftk", "format", "schedule", "sampler", "name", "options", "plugin", "T", "eta"])
values = st.recursive(st.integers(-3, 3) | st.booleans() | st.text(max_size=4) | st.floats(),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                      max_leaves=10)


def toml_text(data, prefix=""):
    """A table as TOML with every value inline (so any nesting is expressible)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v > 0 else "-inf") if v in (float("inf"), float("-inf")) else repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(map(value, v)) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return str(v)
    return "".join(f"{k} = {value(v)}\n" for k, v in data.items())


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, values, max_size=4).map(toml_text) | st.text(max_size=80))
@example("difftk = 1\n")
@example("[difftk]\nformat = \"1\"\n")
def test_fuzzed_pipeline_files_read_or_are_one_line(text):
    try:
        spec = PipelineSpec.from_toml(text, source="fuzz.toml")
    except SpecError as err:
        assert "\n" not in str(err) and str(err).startswith("fuzz.toml")
    else:
        assert PipelineSpec.from_toml(spec.to_toml()) == spec
