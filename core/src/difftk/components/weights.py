"""Weights files a component is built from, named by a path or by the name a plugin ships them under.

A component with a ``weights`` option (a first stage, say) takes either the path of a file or a shipped
name, such as ``mnist-kl`` for the ``kl`` autoencoder, that a plugin registered with
``register.add_weights("autoencoder", "kl", "mnist-kl", PATH)``. A name travels with a pipeline spec
where a path would not: a model trained on a shipped first stage loads on any machine with the plugin.

The file's content fingerprint (sha256) is recorded beside the name or path when the component is first
built, so a model is never loaded with a first stage other than the one it was trained with: a file
whose content differs is refused in one line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from difftk.errors import OptionError

#: bytes read at a time while hashing
_CHUNK = 1 << 20


def is_path(value: str) -> bool:
    """Whether ``value`` names a file rather than shipped weights: it holds a path separator, ends in
    ``.safetensors``, or exists. Anything else is looked up as a shipped name."""
    return (
        "/" in value or "\\" in value or value.endswith(".safetensors") or value.startswith("~")
        or Path(value).exists()
    )


def locate(kind: str, component: str, value: str) -> Path:
    """The file ``value`` names for the ``kind`` component ``component``: the path itself (absolute,
    ``~`` expanded), or the file of the weights a plugin ships under that name; an unknown name is one
    :class:`~difftk.errors.UnknownComponentError` line with the shipped names."""
    if is_path(value):
        return Path(value).expanduser().resolve()
    from difftk.components import plugins

    return plugins.registry().shipped_weights(kind, component, value).path


def sha256_of(path: Path, *, what: str, fix: str) -> str:
    """The sha256 (hex) of the content of the file ``path``; a missing or unreadable file is one
    :class:`~difftk.errors.OptionError` line naming ``what`` it is and the ``fix``."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise OptionError(f"no such {what} file {path}: {fix}") from None
    except IsADirectoryError:
        raise OptionError(f"{what} {path} is a directory, not a file: {fix}") from None
    except OSError as err:
        raise OptionError(f"{what} {path} cannot be read ({err.strerror or err}): {fix}") from None
    return digest.hexdigest()


def check_sha256(recorded: str | None, actual: str, *, what: str) -> str:
    """``actual``, when it is the ``recorded`` fingerprint (or none was recorded); else one
    :class:`~difftk.errors.OptionError` line: ``what`` (e.g. "autoencoder weights mnist-kl") is not the
    file the model was made with."""
    if recorded is None or recorded.lower() == actual:
        return actual
    raise OptionError(
        f"{what} are not the ones this model was trained with (sha256 {recorded[:16]}… recorded, "
        f"{actual[:16]}… now): put the original file back, or retrain the model on these weights"
    )
