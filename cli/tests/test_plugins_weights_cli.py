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
