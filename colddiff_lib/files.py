"""Writing files: the one place the library writes a file, so that an interruption never leaves half of one.

Every file the library writes (checkpoints, zoo weights and cards, exported graphs, figures, result
tables, run descriptions) is written to a temporary name in the same folder (``.NAME.XXXX.tmp``),
flushed to disk (``fsync``), given its permissions (``mode``, explicit: 0o644 unless a caller asks
otherwise) and renamed over the target (``os.replace``, atomic on POSIX and Windows). A reader sees the
old file or the new one, never half of one; a write that fails or is interrupted leaves the old file as
it was and removes its temporary file.

Three forms of the same write:

* :func:`atomic_write` hands ``write`` an open binary file (``torch.save``, PIL, matplotlib);
* :func:`atomic_write_path` hands ``write`` the temporary file's path (writers that open files
  themselves, such as ONNX's);
* :func:`write_bytes`, :func:`write_text` and :func:`write_json` write data (what, then where, as
  ``torch.save(obj, path)``).

Also here: the SHA-256 digests the zoo and the exports record (:func:`sha256_file`,
:func:`sha256_bytes`, :func:`canonical_json`), a folder swapped into place in one step
(:func:`replace_folder`) and the clean-up of what a killed write left (:func:`remove_temporaries`).
A leaf module: it imports nothing else from the library.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, List, Union

PathLike = Union[str, os.PathLike]

# : The permissions of a written file unless its writer asks for others: readable by
# everyone (results, : cards and exported graphs are served to readers), writable by its
# owner.
DEFAULT_MODE = 0o644
#: The permissions of a written folder (:func:`make_temporary_folder`).
FOLDER_MODE = 0o755

__all__ = [
    "atomic_write",
    "atomic_write_path",
    "write_bytes",
    "write_text",
    "write_json",
    "canonical_json",
    "sha256_bytes",
    "sha256_file",
    "rename",
    "replace_folder",
    "make_temporary_folder",
    "remove_temporaries",
    "DEFAULT_MODE",
]


def _temporary(path: Path):
    """A new temporary file beside ``path``: ``(file descriptor, its path)``, named ``.NAME.XXXX.tmp``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return fd, Path(tmp)


def _finish(tmp: Path, path: Path, mode: int) -> Path:
    """Give ``tmp`` its permissions and rename it over ``path``; then flush the folder's entry to disk."""
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk, where the system allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: PathLike, write: Callable[[BinaryIO], None], mode: int = DEFAULT_MODE
) -> Path:
    """Call ``write(file)`` on a temporary binary file beside ``path``, flush it to disk, give it the
    permissions ``mode`` and rename it to ``path``. Returns ``path``; on any exception (an interruption
    too) the temporary file is removed, ``path`` is left as it was, and the exception propagates."""
    path = Path(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        return _finish(tmp, path, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_path(
    path: PathLike, write: Callable[[Path], None], mode: int = DEFAULT_MODE
) -> Path:
    """As :func:`atomic_write`, for a writer that opens the file itself: ``write(tmp)`` gets the temporary
    file's path (it exists, empty; the writer replaces or fills it)."""
    path = Path(path)
    fd, tmp = _temporary(path)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        return _finish(tmp, path, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(data: bytes, path: PathLike, mode: int = DEFAULT_MODE) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data), mode)


def write_text(text: str, path: PathLike, mode: int = DEFAULT_MODE) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return write_bytes(text.encode("utf-8"), path, mode)


def write_json(
    obj: Any,
    path: PathLike,
    indent: Union[int, None] = 2,
    sort_keys: bool = True,
    mode: int = DEFAULT_MODE,
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically: indented (``indent``; ``None``: one compact line) with
    sorted keys by default, and a final newline."""
    separators = (",", ":") if indent is None else None
    return write_text(
        json.dumps(obj, indent=indent, sort_keys=sort_keys, separators=separators)
        + "\n",
        path,
        mode,
    )


def canonical_json(obj: Any) -> bytes:
    """``obj`` as canonical JSON bytes (sorted keys, no spaces, ASCII): what a digest of data is taken of."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    """The SHA-256 hex digest of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rename(source: PathLike, target: PathLike) -> Path:
    """Rename ``source`` over ``target`` in one step (``os.replace``) and flush the folder's entry to disk."""
    os.replace(source, target)
    _fsync_folder(Path(target).parent)
    return Path(target)


def remove_temporaries(folder: PathLike, name: str = "*") -> List[Path]:
    """Remove the temporary files that writes of files named ``name`` (a glob, e.g. ``"*.pt"``) into
    ``folder`` left when they were killed halfway; returns what was removed. Only a writer that holds the
    folder (its run lock) may call this: a running write's temporary file looks the same."""
    removed = []
    for stale in Path(folder).glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def make_temporary_folder(beside: PathLike, mode: int = FOLDER_MODE) -> Path:
    """A new empty folder beside ``beside`` (named ``.NAME.XXXX.new``) with the permissions ``mode``: where a
    folder's new content is written before :func:`replace_folder` puts it in place."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    new = Path(
        tempfile.mkdtemp(dir=beside.parent, prefix=f".{beside.name}.", suffix=".new")
    )
    os.chmod(new, mode)
    return new


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return (
        renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
        == 0
    )


def replace_folder(new: PathLike, folder: PathLike) -> None:
    """Put the folder ``new`` where ``folder`` is, as one step: swapped atomically where the system can (a
    reader then sees the old folder or the new one, each whole: never a file of one beside a file of the
    other); else the old folder is renamed aside first, and for an instant there is none."""
    new, folder = Path(new), Path(folder)
    if not folder.exists():
        os.rename(new, folder)
    elif _exchange(new, folder):
        shutil.rmtree(new)  # it holds the old files now
    else:
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.rename(folder, old)
        os.rename(new, folder)
        shutil.rmtree(old)
    _fsync_folder(folder.parent)
