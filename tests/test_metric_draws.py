"""Every registered metric draws its samples through EvalContext.samples: the one path that quantises
them as files hold them, shares a draw between metrics, splits it over processes (--nproc), and
serves the images of `evaluate --samples`."""

import ast
import inspect
import sys

import difftk
import pytest
from difftk.components import plugins

#: the calls that would draw samples around the context
AROUND = {"sample", "generate"}


def calls_in(module) -> set[str]:
    """The names of the functions and methods ``module`` calls."""
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


@pytest.mark.parametrize("name", difftk.available("metric"))
def test_no_metric_draws_samples_around_the_context(name):
    module = sys.modules[plugins.registry().get("metric", name).cls.__module__]
    assert not calls_in(module) & AROUND, f"metric '{name}' ({module.__name__}) draws samples itself: use context.samples"


def test_the_check_sees_a_draw_around_the_context():
    import difftk.evaluation.context as context  # its own draw: the one place a metric's samples come from

    assert "sample" in calls_in(context)
