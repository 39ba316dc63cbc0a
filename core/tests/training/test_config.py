"""TrainConfig: its own checks, and a bad value inside a checkpoint's train_config is the file's fault: it
is named as the stored setting, never as a flag the user did not give."""

import attrs
import pytest
from difftk.errors import CheckpointError, OptionError
from difftk.training.config import TrainConfig, check_saved_config, config_for_resume

SAVED = attrs.asdict(TrainConfig(steps=4))


@pytest.mark.parametrize("key, value, said", [
    ("seed", "abc", "seed = 'abc' has the wrong type: expected int"),
    ("lr", -1.0, "lr = -1.0 is out of range"), ("precision", "fp7", "precision = 'fp7' is not allowed"),
    ("eval_metrics", "fid", "eval_metrics = 'fid' must be a list of values"),
    ("batch_size", True, "batch_size = True has the wrong type"),
])
def test_a_bad_stored_setting_names_the_file_and_the_setting(key, value, said):
    with pytest.raises(CheckpointError, match=f"c.safetensors: its stored training setting {said}") as err:
        config_for_resume({**SAVED, key: value}, source="c.safetensors", steps=8)
    assert f"{key}=" not in str(err.value)  # no `key=value` that the command line would read as a flag


def test_every_field_is_checked_alone():
    for name, field in attrs.fields_dict(TrainConfig).items():
        if field.validator is not None:
            with pytest.raises(CheckpointError, match=f"setting {name} = "):
                check_saved_config({name: object()})


def test_good_settings_resume_with_the_overrides():
    assert config_for_resume(SAVED, steps=8) == TrainConfig(steps=8)


def test_the_config_says_what_is_off_and_what_is_wrong():
    assert TrainConfig(steps=1).eval_every == 0  # off by default: training pays nothing
    assert TrainConfig(steps=1, eval_metrics=["fid", "accuracy"]).eval_metrics == ("fid", "accuracy")
    with pytest.raises(OptionError, match="eval_every=5 scores eval_metrics, but none is named"):
        TrainConfig(steps=1, eval_every=5)
    with pytest.raises(OptionError, match="must be metric names"):
        TrainConfig(steps=1, eval_every=5, eval_metrics=("",))
