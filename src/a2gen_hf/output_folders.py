"""Output folders written safely: one writer at a time, built beside the target and switched in atomically, and what
a killed run left behind removed by the next run on the same folder.

``a2gen prepare`` (:func:`~a2gen_hf.data.convert_log`) and ``a2gen train`` use these. A run:

1. takes the lock of its output folder (:func:`output_lock`, an ``flock`` on the hidden sibling file
   ``.<name>.a2gen-lock``; the operating system releases it when the process dies, so a killed run never leaves a
   stale lock). A forked child closes its copy of the lock's descriptor at once (:func:`_close_locks_in_child`), so
   that a worker that outlives its killed parent cannot keep the lock. A second writer gets
   :class:`OutputBusyError` at once instead of mixing its files with the first's.
2. under the lock, removes the staging folders of killed runs and, if a run died in the middle of a switch, puts
   the previous folder back (:func:`recover`);
3. writes into a staging sibling ``.<name>.a2gen-staging-<pid>-<random>`` (:func:`staging_folder`);
4. switches it in (:func:`switch_in`): one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux, else two renames whose
   interruption step 2 repairs. Readers see the old folder or the new one, never a mix.

Only folders and files these functions created are ever deleted: the staging folder, and the previous version of
the output after the switch (which callers check holds only what their command writes).
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; the switch stays atomic but two writers are not kept apart
    fcntl = None

LOCK_SUFFIX = ".a2gen-lock"
STAGING_MARK = ".a2gen-staging-"
PREVIOUS_MARK = ".a2gen-previous-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# Locks this process holds: path -> (file descriptor, depth). Re-entrant, so that train_from_data_dir and the
# train() it calls share one lock.
_held: dict[Path, list[int]] = {}


class OutputBusyError(ValueError):
    """Another process is writing the same output folder."""


class OutputNotWritableError(ValueError):
    """The folder that holds the output folder is not writable (the lock and the staging folder go there)."""


class OutputWriteError(OSError):
    """Writing into the output folder failed part way (a full disk, an I/O error); the message is one line naming the
    folder, what was written and what to do. ``problem`` is the message without how to go on (``a2gen compare``,
    which trains its runs again, says its own)."""

    problem = ""


# The errors of a folder that may not be written: no permission, or a file system mounted read-only.
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
# ... and of a full disk or quota: what the user frees, not a fault of the run.
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


# ... and what creating a file in a folder that exists raises on a file system that takes no new files (/proc, /sys):
# "No such file or directory", about a file the user never named.
_TAKES_NO_FILES = (*_NOT_WRITABLE, errno.ENOENT)


def _reason(error: OSError) -> str:
    """Why a folder took no new file, in words: the system's, except for ENOENT in a folder that exists (/proc), whose
    "No such file or directory" reads as if the folder were missing."""
    return "it takes no new files" if error.errno == errno.ENOENT else (error.strerror or str(error))


def _not_writable(target: Path, error: OSError) -> OutputNotWritableError:
    """The message for an output whose parent folder refuses the lock file or the staging folder."""
    mine = target.is_dir() and os.access(target, os.W_OK)
    example = f"e.g. {target / 'data'}, inside the output folder you gave, which is yours" if mine else (
        "e.g. a folder under your home")
    return OutputNotWritableError(
        f"{target.parent} is not writable ({_reason(error)}): the run writes a lock file "
        f"(.{target.name}{LOCK_SUFFIX}) and a staging folder beside the output folder {target.name}, in "
        f"{target.parent}, and switches the new folder in there. Give an output folder inside a folder you can "
        f"write, {example}."
    )


def real_path(path: str | os.PathLike) -> Path:
    """Where ``path`` really is: ``os.path.realpath``, absolute, ``..`` and symbolic links followed.

    Every output path is taken this way, by the write (lock, staging, switch) and by the checks below alike:

    - an output folder that is a link (``data -> /big/disk/data``) is written through, where it points (its lock,
      staging and switch beside the real folder), and stays as it is; before, the switch swapped the link itself out
      for a folder. The checks must judge the folder that is written, so they follow links the same way.
    - ``os.path.realpath``, not ``Path.resolve``: on a link loop ``Path.resolve`` raises ``RuntimeError`` (Python
      3.10 to 3.12), which a check would turn into a traceback; ``realpath`` returns the path as far as it resolves,
      and the command then fails on it with an ordinary error.
    """
    return Path(os.path.realpath(path))


# -- Output paths, checked before any work ----------------------------------------------------------------------------
# The rules every command applies to what it writes: the path is usable (no file where a folder belongs, no folder
# where a file belongs, the file's folder exists), and it is apart from the command's inputs (not one of them, not
# inside one, not around one). They return the problem, not an error: a message fragment that begins with the path
# as given, or a relation; the CLI prefixes its flag ("--output " + fragment) and the library raises ValueError.

IS, INSIDE, AROUND = "is", "inside", "around"


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the current folder at worst)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _loop_problem(shown: str, target: Path) -> str | None:
    """The fragment for a path through a symbolic link that leads back to itself (``a -> b``, ``b -> a``), or None:
    no file or folder can be made there, and ``exists()`` reads it as missing."""
    for candidate in (*reversed(target.parents), target):
        try:
            os.stat(candidate)
        except OSError as error:
            if error.errno == errno.ELOOP:
                return (f"{shown}: {candidate} is a symbolic link that loops (it leads back to itself); choose "
                        "another path.")
    return None


def folder_output_problem(path: str | os.PathLike, beside: bool = False) -> str | None:
    """Why ``path`` cannot be the folder a command writes, or None: something other than a folder stands there, a
    file stands where one of its folders belongs, a symbolic link on the way loops, or the folder where the command
    first creates files takes none. A folder that does not exist yet (nor its parents) is fine: it is created.
    ``beside``: the command also makes files beside an existing folder (its :func:`output_lock` file, the
    :func:`staging_folder` of a new version), so that folder's parent must take files too. The fragment begins with
    the path as given (e.g. ``out exists and is a file; ...``)."""
    shown, target = os.fspath(path), Path(path)
    if problem := _loop_problem(shown, target):
        return problem
    if target.exists() and not target.is_dir():
        return f"{shown} exists and is a file; choose a folder name (the command writes a folder there)."
    ancestor = _first_existing(target.parent)
    if not ancestor.is_dir():
        return f"{shown}: {ancestor} is a file, not a folder; choose another path."
    # Where the command first creates something: in the folder, if it exists (a read-only one is refused here, not
    # after the work), else where the folder (and its missing parents) would be made. With ``beside``, an existing
    # folder's parent too: the lock file and the staging folder of a new version go beside the folder.
    if not target.is_dir():
        return _no_files_problem(shown, ancestor, target)
    problem = _no_files_problem(shown, target, target)
    if problem or not beside:
        return problem
    parent = real_path(target).parent  # the lock's folder (lock_file); named as given where it is the same
    parent = target.parent if real_path(target.parent) == parent else parent
    return _no_files_problem(shown, parent, target,
                             where="its parent folder, where the lock file and the new version are made")  # fmt: skip


def file_output_problem(path: str | os.PathLike, example: str, create_folders: bool = False) -> str | None:
    """Why ``path`` cannot be the file a command writes, or None: it is a folder, it ends with a slash (which names a
    folder), a file stands where one of its folders belongs, a symbolic link on the way loops, or its folder does not
    exist (allowed with ``create_folders``, for writers that create it). ``example``: a file name to suggest (e.g.
    ``metrics.json``). The fragment begins with the path as given."""
    shown, target = os.fspath(path), Path(path)
    if problem := _loop_problem(shown, target):
        return problem
    if target.is_dir():
        return f"{shown} is a folder; give a file name, e.g. {target / example}."
    if shown.endswith(("/", os.sep)):  # Path() drops the slash: pl/new.png/ would become the file pl/new.png
        return f"{shown} ends with a slash, which names a folder; give a file name, e.g. {target / example}."
    ancestor = _first_existing(target.parent)
    if not ancestor.is_dir():
        return f"{shown}: {ancestor} is a file, not a folder; choose another path."
    if ancestor != target.parent and not create_folders:
        return f"{shown}: the folder {target.parent} does not exist; create it first or choose another path."
    # The file is written beside its name and renamed over it (replacing_file): its folder must take new files.
    return _no_files_problem(shown, ancestor, target)


def cannot_create_files(folder: str | os.PathLike) -> OSError | None:
    """The error that creating a file in the existing folder ``folder`` raises (no permission, a file system mounted
    read-only or one that takes no files such as /proc, a quota), or None: a hidden empty file is created and removed
    at once, which is the only sure test (``os.access`` misses read-only mounts and /proc, and knows nothing of
    quotas or ACLs)."""
    probe = Path(folder) / f".a2gen-write-check-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        return error
    os.close(descriptor)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def _no_files_problem(shown: str, folder: Path, target: Path, where: str | None = None) -> str | None:
    """The fragment for an output ``target`` (given as ``shown``) whose folder ``folder`` (an existing one: the
    target itself, its parent or the nearest ancestor that exists) takes no new files, or None. ``where``: what
    ``folder`` is to the target, in words (by default read off the two paths)."""
    error = cannot_create_files(folder)
    if error is None:
        return None
    if where is None:
        where = ("the folder itself" if folder == target else "its parent folder" if folder == target.parent
                 else "the nearest folder on its path that exists, where its folders would be made")  # fmt: skip
    reason = "" if error.errno == errno.ENOENT else f": {error.strerror or error}"  # /proc: not "No such file"
    return f"{shown}: cannot create files in {folder} ({where}{reason}); choose a writable folder."


def overlap(output: str | os.PathLike, source: str | os.PathLike) -> str | None:
    """Where the output path lies relative to an input path, both taken by :func:`real_path` (links followed where
    they point): :data:`IS` (the same path), :data:`INSIDE` (within the input), :data:`AROUND` (the input lies within
    the output), or None (apart)."""
    output, source = real_path(output), real_path(source)
    if output == source:
        return IS
    if source in output.parents:
        return INSIDE
    if output in source.parents:
        return AROUND
    return None


def overlap_problem(
    output: str | os.PathLike,
    inputs: Mapping[str, str | os.PathLike | None],
    relations: tuple[str, ...] = (IS, INSIDE, AROUND),
) -> tuple[str, str] | None:
    """The first of ``inputs`` (a flag or name -> its path; None and '' are skipped) that ``output`` is, lies inside or
    lies around (:func:`overlap`, among ``relations``), as ``(flag, relation)``; None when it is apart from all."""
    for flag, source in inputs.items():
        if source is None or not os.fspath(source):
            continue
        relation = overlap(output, source)
        if relation in relations:
            return flag, relation
    return None


def _remove(path: Path) -> None:
    """Remove a folder this module made, or a symbolic link standing in its place (only the link, not where it
    points): ``rmtree`` refuses a link, and its ``ignore_errors`` left it there for good."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def lock_file(target: str | os.PathLike) -> Path:
    target = real_path(target)
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


@contextmanager
def output_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold the write lock of ``target`` (a folder, which need not exist yet) and repair what a killed writer left.

    Raises:
        OutputBusyError: another process holds it; the message names that process.
        OutputNotWritableError: the folder that holds ``target`` is not writable.
    """
    target = real_path(target)
    if target in _held:
        _held[target][1] += 1
        try:
            yield target
        finally:
            _held[target][1] -= 1
        return
    path = lock_file(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if error.errno not in _TAKES_NO_FILES:
            raise
        raise _not_writable(target, error) from None
    pid = os.getpid()
    try:
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip() or "unknown"
                raise OutputBusyError(
                    f"{target} is being written by another a2gen run (process {holder}); wait until it ends, or "
                    "choose another output folder. Two runs writing one folder would mix their files."
                ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _held[target] = [descriptor, 1]
        recover(target)
        yield target
    finally:
        _held.pop(target, None)
        if os.getpid() == pid:  # a forked child that unwinds this block closed its copy already (at the fork)
            os.close(descriptor)  # releases the flock


def _close_locks_in_child() -> None:
    """In a forked child: close the inherited descriptors of the locks its parent holds. An ``flock`` belongs to
    the open file description, which a fork shares: a child holding a copy (a prepare worker) would keep the lock
    after its parent died, and every later run on the folder would be refused."""
    for descriptor, _depth in _held.values():
        try:
            os.close(descriptor)
        except OSError:
            pass
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_locks_in_child)


def _siblings(target: Path, mark: str) -> list[Path]:
    prefix = f".{target.name}{mark}"
    if not target.parent.is_dir():
        return []
    return sorted(path for path in target.parent.iterdir() if path.name.startswith(prefix))


def recover(target: str | os.PathLike) -> list[str]:
    """Under the lock: remove killed runs' staging folders; restore or remove an interrupted switch's previous
    folder. Returns what was done (one line each)."""
    target = real_path(target)
    done = []
    for staging in _siblings(target, STAGING_MARK):
        _remove(staging)
        done.append(f"removed {staging.name}, left by a run that was killed")
    for previous in _siblings(target, PREVIOUS_MARK):
        if not target.exists():
            os.rename(previous, target)
            done.append(f"restored {target.name} from {previous.name} (a run was killed while switching it)")
        else:
            _remove(previous)
            done.append(f"removed {previous.name}, the previous {target.name} of a run killed after its switch")
    return done


def staging_folder(target: str | os.PathLike) -> Path:
    """A new, empty sibling of ``target`` to build the new version in (on the same file system, for the rename)."""
    target = real_path(target)
    staging = target.parent / f".{target.name}{STAGING_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        if error.errno not in _TAKES_NO_FILES:
            raise
        raise _not_writable(target, error) from None
    return staging


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def switch_in(staging: Path, target: str | os.PathLike) -> None:
    """Make the complete folder ``staging`` the new ``target``; the previous ``target`` (if any) is deleted."""
    target = real_path(target)
    give_open_modes(staging)  # safetensors' 0600 weights readable as every other file of the folder
    if target.is_dir() and _exchange(staging, target):
        shutil.rmtree(staging)  # now holds the previous version
    elif target.exists():
        previous = target.parent / f".{target.name}{PREVIOUS_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(target, previous)
        os.rename(staging, target)  # a kill between the renames: recover() puts the previous folder back
        shutil.rmtree(previous)
    else:
        os.rename(staging, target)
    _fsync_folder(target.parent)


def _write_failure(error: BaseException) -> str | None:
    """Why a write failed, in words, or None when ``error`` is no write failure: an ``OSError``, or safetensors'
    ``SafetensorError``, which carries the operating system's error only in its text ("Error while serializing: I/O
    error: No space left on device (os error 28)")."""
    if isinstance(error, OSError):
        return NO_SPACE_LEFT if error.errno in _NO_SPACE else error.strerror or str(error)
    from safetensors import SafetensorError

    if not isinstance(error, SafetensorError):
        return None
    code = re.search(r"\(os error (\d+)\)", str(error))
    return NO_SPACE_LEFT if code and int(code[1]) in _NO_SPACE else str(error).strip().split("\n")[0]


NO_SPACE_LEFT = "no space left on the device"


@contextmanager
def write_failures_named(
    what: str, folder: str | os.PathLike, then: str | Callable[[], str], partial: Path | None = None
) -> Iterator[None]:
    """A write in the block that fails (a full disk, an I/O error) raises :class:`OutputWriteError`, one line:
    ``cannot write WHAT in FOLDER: why.``, for a full disk what to free, and ``then`` (how to go on, a sentence, or a
    function that says it once the write failed).
    ``partial``, the staging folder the block writes into, is removed first: a failed save leaves no half-written
    copy behind."""
    try:
        yield
    except Exception as error:
        reason = _write_failure(error)
        if reason is None:
            raise
        if partial is not None:
            _remove(partial)
        room = " Free space there, or choose an output folder on a disk with room." if reason == NO_SPACE_LEFT else ""
        problem = f"cannot write {what} in {folder}: {reason}.{room}"
        failure = OutputWriteError(f"{problem} {then() if callable(then) else then}")
        failure.problem = problem
        raise failure from error


def remove_dead_work_folders(folder: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove the work folders ``<prefix><pid>_*`` in ``folder`` whose process is gone (a process killed by a signal
    never runs its cleanup); those of live processes, this one's included, stay. Returns the removed ones."""
    removed = []
    for path in Path(folder).glob(f"{prefix}*_*"):
        pid = path.name[len(prefix) :].split("_", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or not path.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # that process is gone: nobody uses the folder any more
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except OSError:  # alive, under another user
            continue
    return removed


@contextmanager
def replacing_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write the new file to; renamed over ``path`` when the block ends without an
    error (readers see the old file or the new one, never half of one), removed otherwise."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield temporary
        if temporary.is_file():  # else os.replace says what is wrong
            give_open_mode(temporary)  # e.g. safetensors' save_file writes 0600
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# -- File modes -------------------------------------------------------------------------------------------------------
# safetensors' save_file (and so transformers' save_pretrained) writes through a temporary file of its own, created
# 0600, and renames it: the weights were the only files of a model folder, a checkpoint or a run that others (a
# teammate, a serving user) could not read, while open() gives every other file 0o666 & ~umask (0644 under umask
# 022). The package's atomic writers give what they write that mode before the rename.

_umask_lock = threading.Lock()
_umask_read_once: list[int] = []


def _umask() -> int:
    """The process's umask, without changing it where possible: Linux shows it in ``/proc/self/status`` (``Umask:``,
    since 4.7), read each time, so a later ``os.umask`` counts. Elsewhere it is read once with ``os.umask``, which can
    only set it: set to 0o077 (the strictest, so that a file another thread creates meanwhile is private, never
    public) and put back at once, under a lock, and kept."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        if not _umask_read_once:
            mask = os.umask(0o077)
            os.umask(mask)
            _umask_read_once.append(mask)
        return _umask_read_once[0]


def open_file_mode() -> int:
    """The permission bits ``open()`` gives a new file: ``0o666 & ~umask`` (0644 under umask 022)."""
    return 0o666 & ~_umask()


def give_open_mode(path: str | os.PathLike, wanted: int | None = None) -> None:
    """Give the regular file ``path`` at least the permission bits an ordinary ``open()`` gives a new file
    (:func:`open_file_mode`, or ``wanted``): 0600 becomes 0644 under umask 022. Bits it has already stay (nothing is
    made less readable); a symbolic link is left alone."""
    wanted = open_file_mode() if wanted is None else wanted
    try:  # best effort: a file system that keeps no modes (some network and FUSE mounts) must not fail the write
        status = os.lstat(path)
        if stat.S_ISREG(status.st_mode) and stat.S_IMODE(status.st_mode) & wanted != wanted:
            os.chmod(path, stat.S_IMODE(status.st_mode) | wanted)
    except OSError:
        pass  # the file keeps the mode it was written with


def give_open_modes(folder: str | os.PathLike) -> None:
    """:func:`give_open_mode` for every regular file under ``folder`` (links not followed), before a new folder is
    switched in."""
    wanted = open_file_mode()
    for root, _folders, files in os.walk(folder):
        for name in files:
            give_open_mode(os.path.join(root, name), wanted)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary sibling, flush it to disk, then rename it over ``path`` (:func:`replacing_file`)."""
    with replacing_file(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def strict_json(value: Any) -> Any:
    """``value`` ready for strict JSON: NaN / inf -> None (what the metrics' ``notes`` explain), numpy numbers and
    arrays -> Python ones, tuples -> lists."""
    if isinstance(value, dict):
        return {key: strict_json(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(inner) for inner in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":  # numpy scalars and arrays
        return strict_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_INFINITIES = ("-Infinity", "Infinity")


def _first_token(text: str, tokens: tuple[str, ...]) -> int:
    """Offset in JSON ``text`` of the first of ``tokens`` (e.g. ``Infinity``, or a number's literal) outside a string
    and not inside a longer number (-1: none)."""
    inside, escaped = False, False
    for offset, character in enumerate(text):
        if inside:
            escaped, inside = (False, True) if escaped else (character == "\\", character != '"')
        elif character == '"':
            inside = True
        elif text.startswith(tokens, offset) and (offset == 0 or text[offset - 1] not in "0123456789.+-eE"):
            return offset
    return -1


def read_json_file(path: str | os.PathLike, what: str, infinity: bool = False) -> Any:
    """
    The value of the JSON file ``path``; every fault is a ``ValueError`` naming the file and, for its text, the line
    and column: a folder, bytes that are not UTF-8, text that is not JSON, and ``Infinity`` / ``-Infinity`` or a
    number beyond a float (``1e400``), which Python's ``json`` reads as infinite but no command writes (a hand edit:
    an infinite figure would render as a result). ``NaN``
    is read, as NaN: reports of earlier versions wrote it where :func:`write_json_atomically` now writes ``null``
    (undefined, e.g. the spread of one seed). ``what`` names the file's kind in the hints (e.g. "the results.json
    that `a2gen compare` wrote").

    ``infinity``: read ``Infinity`` / ``-Infinity`` (and ``1e400``) as ``inf`` / ``-inf`` instead, for files that
    other writers fill with plain ``json.dumps``, where an infinite value is a fact of the run: a Trainer
    ``trainer_state.json`` holds ``"grad_norm": Infinity`` when the gradient overflows, ``"loss": Infinity`` when
    the loss does. The reader decides what an infinite value means there.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give {what} in it.")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give {what}.")
    infinities: list[str] = []

    def finite_float(literal: str) -> float:
        number = float(literal)
        if math.isinf(number):  # 1e400: beyond a float, read by Python's json as inf without a word
            infinities.append(literal)
        return number

    try:
        text = path.read_text(encoding="utf-8")
        value = json.loads(
            text,
            parse_constant=float if infinity else (  # float("-Infinity") is -inf, float("NaN") NaN
                lambda name: infinities.append(name) if name != "NaN" else math.nan),
            parse_float=float if infinity else finite_float,
        )
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); give {what}.") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}, column {error.colno}: not valid JSON ({error.msg}).") from None
    if infinities:
        offset = _first_token(text, tuple(dict.fromkeys([*_INFINITIES, *infinities])))
        line = text.count("\n", 0, offset) + 1
        column = offset - text.rfind("\n", 0, offset)
        shown = text[offset:].split(",")[0].split("}")[0].split("]")[0].strip()
        raise ValueError(f"{path}, line {line}, column {column}: {shown} is not a figure any command writes (an "
                         "infinite number); give a finite number, or null where a value is undefined.")
    return value


def write_json_atomically(path: str | os.PathLike, value: Any) -> None:
    """:func:`strict_json` of ``value`` as indented JSON, written by :func:`write_text_atomically`."""
    write_text_atomically(path, json.dumps(strict_json(value), indent=2, allow_nan=False) + "\n")


def file_digest(path: str | Path, new_digest: Any = None) -> str:
    """The hex digest of a file's bytes, read in 16 MiB blocks: ``hashlib.sha256`` by default (checkpoint files), or
    any hashlib-like constructor ``new_digest`` (``xxhash.xxh3_64`` for prepared data, where speed matters)."""
    import hashlib

    digest = (new_digest or hashlib.sha256)()
    with open(path, "rb") as handle:
        while block := handle.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()
