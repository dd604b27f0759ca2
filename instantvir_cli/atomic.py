"""Atomic, exclusive outputs: files that appear at their targets together and complete, or not at all.

    with AtomicOutput([video, sidecar], overwrite=False) as out:   # locks `video`, refuses existing targets
        write_video(out.temp(video))                                # hidden temporaries beside the targets
        write_json(out.temp(sidecar))
    # on leaving the block: every temporary fsynced, then moved onto its target, the folder fsynced;
    # on an exception: the temporaries removed, the targets untouched

The rules, for every file vir writes (restored and degraded videos, sidecars, distill checkpoints,
states and configs):

- A temporary is `.<name>.vir-<pid>-<hex>.partial<suffix>` in the target's folder, so the rename
  never crosses a file system. Nothing is renamed before every temporary of the set is complete
  and fsynced, so a full disk (ENOSPC) at any point leaves nothing new at the targets.
- A lock `.<name>.vir-lock` beside the first target is held (flock) from the start to the commit:
  a second vir writing the same output is refused at once (exit 6), before it does any work.
- Without `overwrite` a target is created with link(2), which fails if a file appeared there
  meanwhile (from any program): two runs to one output can't both succeed.
- `clears` are files that describe a target (its sidecar) and must not outlive it: without
  `overwrite` their presence refuses the output; with it they are removed before the targets
  are renamed, so a new video is never paired with an old sidecar.
- Temporaries and locks are removed on an error, Ctrl-C, SIGTERM, SIGHUP and at exit. After
  SIGKILL they stay behind (hidden, never at a target) and the next vir that writes into that
  folder removes every one that no live process holds: a live writer holds a flock on each.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import signal
import threading
from collections.abc import Iterable
from pathlib import Path

from instantvir_cli.errors import OutputRefused

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, no stale-file removal
    fcntl = None

TEMP_RE = re.compile(r"^\..+\.vir-\d+-[0-9a-f]+\.partial(\.[^.]*)?$")
LOCK_SUFFIX = ".vir-lock"
LOCK_RE = re.compile(r"^\..+\.vir-lock$")

_LIVE: dict[Path, int | None] = {}       # our temporaries and locks -> their fd
_LIVE_LOCK = threading.Lock()
_HANDLERS = False


# ----------------------------------------------------------------------------- process-wide cleanup
def _remove_live() -> None:
    for p in list(_LIVE):
        try:
            os.unlink(p)
        except OSError:
            pass
        _LIVE.pop(p, None)


def _on_signal(signum, frame) -> None:  # pragma: no cover - exercised in a subprocess test
    _remove_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_cleanup() -> None:
    """Remove our files at exit and on SIGTERM/SIGHUP (where no handler is set yet)."""
    global _HANDLERS
    if _HANDLERS:
        return
    _HANDLERS = True
    atexit.register(_remove_live)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


def _track(path: Path, fd: int | None) -> None:
    with _LIVE_LOCK:
        _LIVE[path] = fd


def _untrack(path: Path) -> int | None:
    with _LIVE_LOCK:
        return _LIVE.pop(path, None)


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_stale(folder: Path) -> list[str]:
    """Delete vir's temporaries and locks in `folder` that no live process holds; returns their names."""
    if fcntl is None:
        return []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        if not (TEMP_RE.match(name) or LOCK_RE.match(name)):
            continue
        path = Path(folder) / name
        if path in _LIVE:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)      # held: its writer is alive
            continue
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def write_error(exc: BaseException, folder: Path | None = None) -> str | None:
    """The reason, when `exc` is a failure to store data (disk full, quota, I/O error), else None.

    Writers report it in their own ways: OSError (Python, PyAV), RuntimeError from torch.save
    ("PytorchStreamWriter failed writing", "unexpected pos N vs M" when a write came up short),
    SafetensorError from safetensors ("IoError ... StorageFull"). When the message says nothing
    a file system of `folder` with less than 1 MiB left counts as full.
    """
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    low = str(exc).lower()
    if any(k in low for k in ("no space left", "storagefull", "quota", "disk full")):
        return "No space left on device"
    if "file too large" in low:
        return "File too large"
    if any(k in low for k in ("file write failed", "failed writing", "unexpected pos", "ioerror")):
        return _space_left_reason(folder) or "a write came up short (no space left, or a file size limit)"
    return _space_left_reason(folder)


def _space_left_reason(folder: Path | None) -> str | None:
    if folder is None:
        return None
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return "No space left on device" if st.f_bavail * st.f_frsize < (1 << 20) else None


# ----------------------------------------------------------------------------- locks
class TargetLock:
    """`.<name>.vir-lock` beside `target`, held with flock until `release()` (or the process ends).

    Raises OutputRefused when another process holds it: "another vir (pid N) is writing TARGET".
    """

    def __init__(self, target: str | Path, what: str = "writing"):
        self.target = Path(target)
        self.path = self.target.with_name(f".{self.target.name}{LOCK_SUFFIX}")
        self._held = False
        if fcntl is None:
            return
        _install_cleanup()
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
            except OSError as e:
                raise OutputRefused(f"can't write {self.target}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(fd)
                os.close(fd)
                raise OutputRefused(f"another vir{f' (pid {holder})' if holder else ''} is {what} {self.target}: "
                                    f"wait for it to finish, or choose another output") from None
            try:       # its last holder may have removed the file between our open and flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except OSError:
                same = False
            if same:
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                except OSError:
                    pass      # the pid is only for the message of a refused second writer
                _track(self.path, fd)
                self._held = True
                return
            os.close(fd)
        raise OutputRefused(f"can't lock {self.target}: its lock file keeps changing")

    def release(self) -> None:
        if self._held:
            fd = _untrack(self.path)
            _unlink(self.path)
            _close(fd)
            self._held = False

    def __enter__(self) -> TargetLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- the output set
class AtomicOutput:
    """A set of target files written through temporaries and moved into place together (module docstring).

    Args:
        targets: the files to produce; the first one is locked.
        overwrite: replace existing targets (else an existing target refuses the output).
        clears: files that describe a target and must not outlive it (see the module docstring).
        lock: take the target lock (off inside a folder its owner already locks, e.g. a run folder).
    Raises: OutputRefused (a target exists, another vir writes it, the folder can't be written).
    """

    def __init__(self, targets: Iterable[str | Path], overwrite: bool = False, clears: Iterable[str | Path] = (),
                 lock: bool = True):
        self.targets = [Path(t) for t in targets]
        self.clears = [Path(c) for c in clears]
        self.overwrite = overwrite
        self._temps: dict[Path, Path] = {}
        self._done = False
        self._lock: TargetLock | None = None
        _install_cleanup()
        for folder in dict.fromkeys(t.parent for t in self.targets):
            remove_stale(folder)
        if lock:
            self._take_lock(self.targets[0])
        try:
            self._check_targets()
        except BaseException:
            self.abort()
            raise

    def _take_lock(self, target: Path) -> None:
        self._lock = TargetLock(target)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _check_targets(self, late: bool = False) -> None:
        if self.overwrite:
            return
        for t in self.targets:
            if os.path.lexists(t):
                raise OutputRefused(f"output exists: {t} (" + ("it appeared while vir was writing; " if late else "")
                                    + "pass --overwrite to replace it)")
        for c in self.clears:
            if os.path.lexists(c):
                raise OutputRefused(f"output's sidecar exists: {c} (it describes another file; pass --overwrite "
                                    f"to replace both)")

    # ------------------------------------------------------------------ temporaries
    def temp(self, target: str | Path) -> Path:
        """A new empty temporary for `target` (one per target), created with the umask's mode."""
        target = Path(target)
        if target not in self.targets:
            raise ValueError(f"{target} is not a target of this output")
        if target in self._temps:
            return self._temps[target]
        tmp = target.with_name(f".{target.name}.vir-{os.getpid()}-{os.urandom(3).hex()}.partial{target.suffix}")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as e:
            raise OutputRefused(f"can't write {target}: {e.strerror or e}") from None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        _track(tmp, fd)
        self._temps[target] = tmp
        return tmp

    def rehold(self, target: str | Path) -> None:
        """Hold the temporary of `target` again after a writer replaced its file (safetensors writes
        a file of its own and renames it over ours): the flock marks it live for `remove_stale`."""
        tmp = self._temps[Path(target)]
        held = _LIVE.get(tmp)
        if fcntl is None or held is None:
            return
        try:
            if os.path.samestat(os.fstat(held), os.stat(tmp)):
                return            # still our file (and our flock)
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a file only this writer knows: never held
        _close(held)
        _track(tmp, fd)

    # ------------------------------------------------------------------ commit / abort
    def commit(self) -> None:
        """fsync every temporary, then move each onto its target (see the module docstring)."""
        if self._done:
            return
        missing = [t for t in self.targets if t not in self._temps]
        if missing:
            self.abort()
            raise ValueError(f"no temporary was written for {missing[0]}")
        placed: list[Path] = []
        try:
            mode = 0o666 & ~_umask()
            for target, tmp in self._temps.items():
                os.chmod(tmp, mode)   # some writers (safetensors) replace the file we made, with mode 0600
                _fsync(tmp, None, target)
            if self.overwrite:
                for c in self.clears:
                    if os.path.lexists(c):
                        os.unlink(c)
            else:
                self._check_targets(late=True)
            for target, tmp in self._temps.items():
                self._place(tmp, target)
                placed.append(target)
            for folder in dict.fromkeys(t.parent for t in self.targets):
                _fsync_dir(folder)
        except OutputRefused:
            if not self.overwrite:
                for t in placed:
                    _unlink(t)
            self.abort()
            raise
        except OSError as e:
            if not self.overwrite:
                for t in placed:
                    _unlink(t)
            self.abort()
            raise OutputRefused(f"can't write {self.targets[0]}: {e.strerror or e}") from None
        self._finish()

    def _place(self, tmp: Path, target: Path) -> None:
        if self.overwrite:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise OutputRefused(f"output exists: {target} (it appeared while vir was writing; pass --overwrite "
                                f"to replace it)") from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
                raise
            if os.path.lexists(target):     # no hard links here: check, then rename (a short race)
                raise OutputRefused(f"output exists: {target} (pass --overwrite to replace it)") from None
            os.replace(tmp, target)
            return
        os.unlink(tmp)

    def abort(self) -> None:
        """Remove the temporaries and the lock; the targets are left as they were. Safe to call twice."""
        for tmp in self._temps.values():
            fd = _untrack(tmp)
            _unlink(tmp)
            _close(fd)
        self._temps = {}
        self._release_lock()
        self._done = True

    def _finish(self) -> None:
        for tmp in self._temps.values():
            _close(_untrack(tmp))
        self._temps = {}
        self._release_lock()
        self._done = True

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def atomic_write(target: str | Path, write, overwrite: bool = True, lock: bool = True, what: str | None = None) -> Path:
    """Write one file atomically: `write(temporary_path)` fills it, then it replaces `target`.

    A failure to store the data (disk full, I/O error; see `write_error`) is OutputRefused naming
    `what` (default: the target); nothing is left behind.
    """
    target = Path(target)
    with AtomicOutput([target], overwrite=overwrite, lock=lock) as out:
        tmp = out.temp(target)
        try:
            write(tmp)
            out.rehold(target)
        except Exception as e:  # noqa: BLE001 - sorted just below
            reason = write_error(e, target.parent)
            if reason is None:
                raise
            raise OutputRefused(f"can't write {what or target}: {reason}") from None
    return target


def _fsync(path: Path, fd: int | None, target: Path) -> None:
    own = fd is None
    if own:
        fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:      # EINVAL: this file system can't sync (nothing to wait for)
            raise OutputRefused(f"can't write {target}: {e.strerror or e}") from None
    finally:
        if own:
            os.close(fd)


def _fsync_dir(folder: Path) -> None:
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


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


__all__ = ["AtomicOutput", "LOCK_SUFFIX", "TargetLock", "atomic_write", "remove_stale", "write_error"]
