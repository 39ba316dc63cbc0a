"""`difftk plugins` lists the weights a plugin ships for a component, beside its checkpoints."""

import json

import difftk
from difftk_cli.testing import run


class Shipper:
    def __init__(self, path):
        self.path = path

    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_weights("autoencoder", "kl", "toy-kl", self.path, "a toy first stage")


def test_shipped_weights_are_listed_with_the_component_they_are_for(register_plugin, tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"weights")
    assert register_plugin(Shipper(path), "shipper")
    rows = {row["name"]: row for row in json.loads(run("plugins", "--json").stdout)}
    assert rows["shipper"]["components"] == {"weights": ["toy-kl (autoencoder kl)"]}
    assert "toy-kl (autoencoder kl)" in run("plugins").stdout


def test_a_plugin_that_ships_files_only_shows_them_by_its_name_or_theirs(register_plugin, tmp_path):
    """`difftk plugins NAME` for a plugin without components (only shipped files) lists the files with
    their summaries, and so does the name of one file; it used to say no such plugin, did you mean it."""
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"weights")
    assert register_plugin(Shipper(path), "shipper")
    for name in ("shipper", "toy-kl"):
        result = run("plugins", name)
        assert result.exit_code == 0, result.output
        assert "toy-kl" in result.stdout and "autoencoder kl weights" in result.stdout and "a toy first stage" in result.stdout
    shown = run("plugins", "pretrained").stdout
    assert "emoji-judge" in shown and "classifier noisy-cnn weights" in shown and "mnist-cfg" in shown
