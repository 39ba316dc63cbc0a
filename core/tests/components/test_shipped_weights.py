"""Weights a plugin ships for a component (``register.add_weights``): what registration accepts, how a
value is read as a path or a name, and the content fingerprint."""

import hashlib
import os

import difftk
import pytest
from difftk.components import plugins
from difftk.components.weights import check_sha256, is_path, locate, sha256_of
from difftk.errors import OptionError, UnknownComponentError


class Shipper:
    def __init__(self, path, name="toy", component="kl", kind="autoencoder"):
        self.args = (kind, component, name, path)

    @difftk.hookimpl
    def difftk_register_components(self, register):
        register.add_weights(*self.args, "test weights")


def test_a_value_is_a_path_when_it_looks_like_one_or_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_path("a/b") and is_path("w.safetensors") and is_path("~/w") and not is_path("mnist-kl")
    (tmp_path / "mnist-kl").write_bytes(b"")
    assert is_path("mnist-kl")  # a file in the working directory wins over a shipped name
    assert locate("autoencoder", "kl", "mnist-kl") == tmp_path.resolve() / "mnist-kl"


def test_registered_weights_are_found_by_kind_component_and_name(difftk_host, tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    assert difftk_host.register(Shipper(path), name="shipper")
    assert locate("autoencoder", "kl", "toy") == path
    with pytest.raises(UnknownComponentError, match="no plugin ships weights for it"):
        locate("autoencoder", "vq", "toy")


@pytest.mark.parametrize("name", ["", "two words", "a/b", "w.safetensors"])
def test_a_name_that_would_read_as_a_path_skips_the_plugin(difftk_host, tmp_path, name):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    with pytest.warns(plugins.PluginWarning, match="must be a non-empty string without spaces"):
        assert not difftk_host.register(Shipper(path, name=name), name="shipper")
    with pytest.warns(plugins.PluginWarning, match="is not a file"):
        assert not difftk_host.register(Shipper(tmp_path / "absent"), name="other")
    assert not [w for w in difftk_host.registry.weights.values() if w.plugin in ("shipper", "other")]


def test_the_fingerprint_is_the_sha256_of_the_whole_content(tmp_path):
    path = tmp_path / "w.bin"
    data = os.urandom((1 << 20) + 12345)  # more than one chunk read
    path.write_bytes(data)
    digest = sha256_of(path, what="weights", fix="fix it")
    assert digest == hashlib.sha256(data).hexdigest()
    assert check_sha256(None, digest, what="w") == check_sha256(digest.upper(), digest, what="w") == digest
    with pytest.raises(OptionError, match=r"^w are not the ones this model was trained with \(sha256 0{16}…"):
        check_sha256("0" * 64, digest, what="w")
    with pytest.raises(OptionError, match=r"^no such weights file .*absent: fix it$"):
        sha256_of(tmp_path / "absent", what="weights", fix="fix it")
    with pytest.raises(OptionError, match="is a directory"):
        sha256_of(tmp_path, what="weights", fix="fix it")
