"""Writing files so that a crash never leaves a half-written one behind, and the output guard
every command runs before its work: an output path must be writable, fit the file system's
limits, not be an input of the command, and never replace what difftk did not write for the
same purpose (:func:`guard_output`)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from difftk.errors import DifftkError, OutputError
from difftk.runtime.untrusted import MAX_JSON_BYTES, read_json

#: what a write may replace: ``none`` (no difftk checkpoint: pictures, pipelines, logs),
#: ``export`` (an exported or classifier checkpoint, never a resumable training one), ``run``
#: (anything: the training loop rewriting its own checkpoint)
REPLACES = ("none", "export", "run")


def short_path(path: str | Path, limit: int = 120) -> str:
    """A path for an error line, cut in the middle when very long."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-limit // 2:]}"


def checkpoint_kind(path: Path) -> str | None:
    """``"training"`` or ``"export"`` when ``path`` is a difftk checkpoint (by its safetensors
    header: a training checkpoint holds an optimizer state), else ``None``. Reads the header only."""
    meta = _safetensors_metadata(path) or {}
    if meta.get("format") != "difftk-checkpoint":
        return None
    return "training" if "optimizer" in meta else "export"


def check_output(path: Path, replaces: str = "none") -> None:
    """Refuse an output path that is a directory, lies under a file, or is a checkpoint that the
    write may not replace (see :data:`REPLACES`); one :class:`OutputError` line each."""
    try:
        if path.is_dir():
            raise OutputError(f"{short_path(path)} is a directory: give a file name")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(f"cannot write {short_path(path)}: {short_path(parent)} is a file, not a directory")
                break
        exists = path.is_file()
    except OSError as err:  # a name too long, a loop of links: stat itself fails
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    if replaces == "run" or not exists:
        return
    kind = checkpoint_kind(path)
    if kind == "training" or (kind == "export" and replaces == "none"):
        what = "a training checkpoint (what difftk train --resume continues)" if kind == "training" else "a difftk checkpoint"
        raise OutputError(f"{short_path(path)} is {what}; writing there would replace it: choose another output path")


#: what each output is for, in words; an existing file or folder is replaced only when difftk
#: wrote it for the same purpose (:func:`written_for`)
PURPOSES: dict[str, str] = {
    "picture": "a PNG picture",
    "export": "a difftk checkpoint export",
    "classifier": "a classifier file",
    "pipeline": "a pipeline file",
    "results": "a JSON file of results",
    "table": "a CSV table of results",
    "compare": "a folder of compare results",
    "report": "a folder of an HTML report",
    "foreign-model": "a folder of a model in another library's format",
    "new-folder": "a folder for a new package",
    "run": "a run directory",
    "samples": "an npz of samples",
    "sample-folder": "a folder of sample PNGs",
}
#: the purposes whose output is a folder
FOLDERS = ("compare", "report", "foreign-model", "new-folder", "run", "sample-folder")
#: what an npz of samples carries as its zip comment, and each PNG of a folder of samples in its text chunk ``Software``
SAMPLES_MARK = "difftk samples"
#: what every PNG difftk writes carries in its text chunk ``Software`` (at the start)
PNG_MARK = "difftk"
#: what the head of every HTML report difftk writes carries
REPORT_MARK = '<meta name="generator" content="difftk">'
#: the file a folder written in another library's format carries, naming the format and difftk's version
EXPORT_MARK = "difftk-export.json"
#: what a compare folder holds (each written by difftk compare)
COMPARE_FILES = {"compare.csv": "table", "summary.csv": "table", "compare.png": "picture"}
#: below this many free bytes an output's disk counts as full
MIN_FREE = 1 << 20


def _safetensors_metadata(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return None
            (size,) = struct.unpack("<Q", head)
            if not 2 <= size <= 100_000_000:
                return None
            meta = read_json(fh.read(size), max_bytes=100_000_000).get("__metadata__") or {}
    except (OSError, DifftkError, AttributeError):
        return None
    return meta if isinstance(meta, dict) else None


def _head_text(path: Path, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _first_line(path: Path) -> str:
    return _head_text(path).split("\n", 1)[0]


def written_for(path: Path) -> str | None:
    """The purpose (a key of :data:`PURPOSES`, or ``"training"``) that difftk wrote the existing
    file ``path`` for, read from the file itself; ``None`` for anything else. Reads a header only."""
    suffix = path.suffix.lower()
    head = b""
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89PNG"):
        try:
            from PIL import Image

            with Image.open(path) as image:
                software = str(image.info.get("Software", ""))
        except Exception:  # noqa: BLE001 - any unreadable PNG is simply not ours
            return None
        return "picture" if software.startswith(PNG_MARK) else None
    if suffix == ".safetensors":
        kind = checkpoint_kind(path)
        if kind is not None:
            return kind
        return "classifier" if (_safetensors_metadata(path) or {}).get("format") == "difftk-classifier" else None
    line = _first_line(path)
    if suffix == ".toml" and line.startswith("# difftk pipeline"):
        return "pipeline"
    if suffix == ".csv" and line.startswith("checkpoint,"):
        return "table"
    if suffix == ".npz":
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                return "samples" if archive.comment == SAMPLES_MARK.encode() else None
        except (OSError, zipfile.BadZipFile, ValueError):
            return None
    if suffix == ".json":
        try:
            with open(path, "rb") as fh:  # a results file is small: more than the reader's bound is not one
                record = read_json(fh.read(MAX_JSON_BYTES + 1))
        except (OSError, DifftkError):
            return None
        return "results" if isinstance(record, dict) and isinstance(record.get("results"), list) else None
    return None


def _folder_foreign(path: Path, purpose: str) -> str | None:
    """What in the existing folder ``path`` difftk did not write for ``purpose`` and would be replaced
    (``None`` when nothing would be)."""
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return None
    if purpose == "new-folder":
        return f"it exists and is not empty (it holds {names[0]})"
    if purpose == "foreign-model":
        return None if EXPORT_MARK in names else f"it holds {names[0]} and is not a model difftk exported"
    if purpose == "sample-folder":
        bad = next((n for n in names if not (n[:-4].isdigit() and n.endswith(".png")
                                             and written_for(path / n) == "picture")), None)
        return f"it holds {bad}, which difftk did not write as a sample" if bad else None
    if purpose == "compare":
        for name, kind in COMPARE_FILES.items():
            if name in names and written_for(path / name) != kind:
                return f"its {name} was not written by difftk compare"
        return None
    if purpose == "report":
        page = path / "index.html"
        if page.exists() and REPORT_MARK not in _head_text(page):
            return "its index.html was not written by difftk"
        return None
    if purpose == "run":
        for name in ("checkpoint.safetensors", "log.jsonl", ".lock", "samples"):
            item = path / name
            if not (item.exists() or item.is_symlink()):
                continue
            if name == "samples":
                if not item.is_dir():
                    return "its samples is a file, where the run writes its sample grids"
            elif item.is_dir() or item.is_symlink():
                return f"its {name} is a {'directory' if item.is_dir() else 'link'}, where the run writes a file"
            elif name == "checkpoint.safetensors" and written_for(item) not in ("training", "export"):
                return "its checkpoint.safetensors is not a difftk checkpoint"  # an export there: resume says why
            elif name == "log.jsonl" and not _is_run_log(item):
                return "its log.jsonl is not a difftk training log"
    return None


def _is_run_log(path: Path) -> bool:
    line = _first_line(path).strip()
    if not line:
        return path.stat().st_size == 0 if path.exists() else True
    try:
        record = read_json(line)
    except DifftkError:
        return False
    return isinstance(record, dict) and "step" in record


def _free_space_check(path: Path, where: Path) -> None:
    try:
        fs = os.statvfs(where)
    except OSError:
        return
    if fs.f_frsize and fs.f_blocks and fs.f_bavail * fs.f_frsize < MIN_FREE:
        raise OutputError(f"cannot write {short_path(path)}: the disk of {short_path(where)} is full "
                          f"({fs.f_bavail * fs.f_frsize:,} bytes free)")


def _probe(path: Path, where: Path) -> None:
    """Create and remove a file in ``where``, the nearest folder of ``path`` that exists: a read-only
    disk, a folder without write permission and /proc all fail here, before any work."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".difftk-probe.", dir=where)
    except OSError as err:
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err} (in {short_path(where)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def guard_output(path: str | Path, purpose: str, *, inputs: Mapping[str, str | Path | None] | None = None) -> Path:
    """Check one output path before any work, or raise one :class:`OutputError` line.

    The path is not empty, a link loop or too long for the file system (each new name within
    its ``NAME_MAX``, the whole within ``PATH_MAX``); its nearest existing parent is a folder
    that accepts a new file (a probe file is created and removed) on a disk that is not full;
    it is none of ``inputs`` (``{what: path}``, e.g. ``{"CHECKPOINT": "m.safetensors"}``); it
    is a file or a folder as ``purpose`` (a key of :data:`PURPOSES`) says; and what it would
    replace, difftk wrote for the same purpose (:func:`written_for`; in a folder, each file it
    would write).
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown output purpose {purpose!r}")
    text = str(path)
    if not text.strip():
        raise OutputError("an empty output path: give a file or folder name")
    path = Path(path)
    folder = purpose in FOLDERS
    try:
        where, missing = _nearest_existing(path)
        exists = where == path
        is_dir = exists and path.is_dir()
        if not exists and _is_link(path):
            raise OutputError(f"cannot write {short_path(path)}: it is a link to nothing")
        where = path if is_dir else (path.parent if exists else where)
        if not where.is_dir():
            raise OutputError(f"cannot write {short_path(path)}: {short_path(where)} is a file, not a folder")
        name_max = _limit(where, "PC_NAME_MAX", 255)
        long = next((n for n in missing if len(os.fsencode(n)) > name_max), None)
        if long is not None:
            raise OutputError(f"cannot write {short_path(path)}: the name {short_path(long, 40)} is "
                              f"{len(os.fsencode(long))} bytes, and this file system allows {name_max}")
        if len(os.fsencode(os.path.abspath(path))) >= _limit(where, "PC_PATH_MAX", 4096):
            raise OutputError(f"cannot write {short_path(path)}: the path is longer than this file system allows")
        for what, given in (inputs or {}).items():
            if given and Path(given).exists() and exists and _same(Path(given), path):
                raise OutputError(f"{short_path(path)} is the {what} this command reads: write to another path")
    except OSError as err:
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    if exists and folder and not is_dir:
        raise OutputError(f"{short_path(path)} is a file: {PURPOSES[purpose]} is written to a folder")
    if is_dir and not folder:
        raise OutputError(f"{short_path(path)} is a folder: give a file name for {PURPOSES[purpose]}")
    _probe(path, where)
    _free_space_check(path, where)
    if exists and folder:
        try:
            foreign = _folder_foreign(path, purpose)
        except OSError as err:
            raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
        if foreign:
            raise OutputError(f"{short_path(path)} would be written into, but {foreign}: choose another path "
                              "(a new or empty folder)")
    elif exists:
        made = written_for(path)
        if made != purpose:
            what = f"is {PURPOSES.get(made, 'a training checkpoint')}" if made else "was not written by difftk"
            raise OutputError(f"{short_path(path)} exists and {what}; writing {PURPOSES[purpose]} there would "
                              "replace it: choose another path (or delete it first)")
    return path


def _nearest_existing(path: Path) -> tuple[Path, list[str]]:
    """The nearest of ``path`` and its parents that exists, and the names below it that do not. A
    loop of links, a name too long or a folder that cannot be searched is raised (``OSError``)."""
    missing = []
    for where in (path, *path.parents):
        try:
            os.stat(where)
        except (FileNotFoundError, NotADirectoryError):  # not there, or under a file (found further up)
            missing.append(where.name)
            continue
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:  # a loop of links, a folder that cannot be searched
                raise
            missing.append(where.name)  # a name too long: said, with its length, by the caller
            continue
        return where, missing[::-1]
    return Path("."), missing[::-1]


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _limit(where: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(where, name)
    except (OSError, ValueError):
        return default


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Create folder ``path`` for the writes inside the block; if one fails (a full disk), the folder
    is removed again when this created it, so no empty or half-written folder is left."""
    path = Path(path)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    try:
        yield path
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, replaces: str = "none") -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    :func:`check_output` runs first; an ``OSError`` (read-only or full disk, a name too long)
    becomes one :class:`OutputError` line, and no partial or temporary file is left.
    """
    path = Path(path)
    check_output(path, replaces)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {short_path(path)}: {err.strerror or err}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, *, replaces: str = "none") -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), replaces=replaces)
