"""Run project code in a sandboxed child process and get its result back: the one place
that starts children (the model loader, the project's `script.py.mako` renderer).

Why each measure: the child's stdout goes to /dev/null and only the last bytes of its
stderr are kept (for the error), so a project that prints gigabytes costs us nothing, and
the result travels in a private temporary file read up to a cap. The child is the leader of a new session; when it ends (or times out) the
whole group is killed, so a grandchild can neither outlive the load nor hold a pipe
open. At start the child asks Linux to kill it when we die (PR_SET_PDEATHSIG), sets
its own memory limit (no `preexec_fn`, which can deadlock when called from a thread)
and writes no bytecode into the workspace. `kill_all()` ends every running child: the
server calls it before `os._exit`. (PDEATHSIG fires when the *thread* that started the
child ends: `run` blocks that thread until the child is gone, so that is never early.)

This file is also the child's entry point (`python child.py SCRIPT ARGS...`): standard
library only, so it runs under the project's own interpreter without migration_lsp. There it
is also the children's one loader of their sibling files (`sibling`), registered as
`migration_lsp_child` before the script runs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

RESULT_ENV = "MIGRATION_LSP_RESULT"  # where the child writes its result
MEMORY_ENV = "MIGRATION_LSP_MEMORY"  # bytes of address space the child allows itself
PARENT_ENV = "MIGRATION_LSP_PARENT"  # our pid: the child exits if it was orphaned before PDEATHSIG
MAX_RESULT = 64 * 1024**2  # bytes of result read back, at most
BOOTSTRAP = "migration_lsp_child"  # this module's name in a child's sys.modules (the scripts find `sibling` there)

_running: set = set()  # Popen objects of live children
_lock = threading.Lock()


class ChildError(Exception):
    """The child failed: a timeout, a crash, a missing or oversized result (one line)."""


def run(python: str, script: str, args: list[str], *, cwd: str, timeout: float, memory: int,
        max_result: int = MAX_RESULT, on_start=None) -> str:
    """`python script *args` sandboxed; returns what the script wrote to $MIGRATION_LSP_RESULT.
    Raises ChildError, never anything else. `on_start(proc)`: told the child's Popen (a
    caller that cancels kills its group: truth.Verifier)."""
    started = start(python, script, args, cwd=cwd, memory=memory)
    if on_start is not None:
        on_start(started.proc)
    return started.finish(None, timeout=timeout, max_result=max_result)


def start(python: str, script: str, args: list[str], *, cwd: str, memory: int, stdin: bool = False) -> Started:
    """`python script *args` sandboxed, started now and finished later (`.finish`): a spare
    child can import its libraries before it has a job, and read the job on stdin
    (`stdin=True`). Raises ChildError."""
    folder = tempfile.mkdtemp(prefix="migration-lsp-")  # 0700, outside the workspace
    result = os.path.join(folder, "result")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.update({RESULT_ENV: result, MEMORY_ENV: str(memory), PARENT_ENV: str(os.getpid())})
    with _lock:  # kill_all sees every child that was started
        try:
            proc = subprocess.Popen(
                [python, os.path.abspath(__file__), script, *args], cwd=cwd, env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise ChildError(f"cannot start {python}: {exc}") from None
        _running.add(proc)
    return Started(proc, folder, result)


class Started:
    """A running child (start()): `finish` it, or `discard` it."""

    def __init__(self, proc: subprocess.Popen, folder: str, result: str) -> None:
        self.proc, self.folder, self.result = proc, folder, result
        self.tail = _Tail(proc.stderr)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self, job: bytes | None, *, timeout: float, max_result: int = MAX_RESULT) -> str:
        """Send `job` on its stdin (a spare), wait for the child, return its result.
        Raises ChildError, never anything else."""
        proc = self.proc
        try:
            if job is not None and proc.stdin is not None:
                try:
                    proc.stdin.write(job)
                    proc.stdin.close()
                except OSError:  # it died meanwhile: its exit code says how
                    pass
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise ChildError(f"took longer than {timeout:g} s (killed)") from None
            finally:
                self._end()
            # (the server's side: the child never gets here, it has no migration_lsp)
            from .project import SkippedFile, read_file

            try:  # a regular file only (a child could leave a FIFO there), within the cap
                data = read_file(self.result, max_result)
            except SkippedFile as exc:
                raise ChildError(f"unusable result: {exc}") from None
            except OSError:
                reason = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                last = self.tail.last_line()
                raise ChildError(f"{reason}: {last}" if last else f"{reason} without a result") from None
            return data.decode("utf-8", errors="replace")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def discard(self) -> None:
        """Kill its group, reap it, remove its folder (a spare nobody needs)."""
        self._end()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _end(self) -> None:
        _kill(self.proc)
        with _lock:
            _running.discard(self.proc)
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


class _Tail:
    """Drains the child's stderr in a thread, keeping only its last bytes (for the error)."""

    KEEP = 4096

    def __init__(self, stream) -> None:
        self.data = b""
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        try:
            while chunk := stream.read1(65536):
                self.data = (self.data + chunk)[-self.KEEP:]
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def last_line(self) -> str:
        self.thread.join(1.0)  # the group is dead: the pipe is at its end
        lines = self.data.decode("utf-8", errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the child's whole process group (the child, and whatever it started)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - not POSIX
            proc.kill()
    except OSError:
        pass


def _kill(proc: subprocess.Popen) -> None:
    """The child's whole process group, then reap the child."""
    _kill_group(proc)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
        pass


def kill_all() -> None:
    """End every running child (and its group): before the server exits with os._exit."""
    with _lock:
        procs = list(_running)
    for proc in procs:
        _kill_group(proc)


# --------------------------------------------------------------------------- in the child


def _sandbox() -> None:  # pragma: no cover - runs in the child
    try:  # die with the parent (Linux); elsewhere the parent's kill_all is all there is
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no C library to load, no prctl (not Linux)
        pass
    if os.environ.get(PARENT_ENV) and os.getppid() != int(os.environ[PARENT_ENV]):
        os._exit(3)  # the parent died before PDEATHSIG was armed
    try:
        import resource

        limit = int(os.environ.get(MEMORY_ENV) or 0)
        if limit > 0:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # no `resource` (Windows), a limit the system refuses
        pass
    sys.dont_write_bytecode = True
    here = os.path.dirname(os.path.abspath(__file__))
    # `python child.py` put migration_lsp/ first on sys.path: its modules must not shadow the project's
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]


def sibling(name: str):
    """migration_lsp/`name`.py, loaded by its path once (kept in sys.modules as
    `migration_lsp_<name>`): the children run without migration_lsp installed, and its folder
    is not on their sys.path (_sandbox: its modules would shadow the project's), so this is
    how truth_child.py reaches model_child.py and both reach alembic_api.py."""
    key = f"migration_lsp_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]  # (a half-run module is not kept)
        raise
    return module


def _main() -> None:  # pragma: no cover - runs in the child
    _sandbox()
    sys.modules[BOOTSTRAP] = sys.modules[__name__]  # the scripts' `sibling` (they cannot import migration_lsp)
    import runpy

    script = sys.argv[1]
    sys.argv = sys.argv[1:]  # the script writes its result to the file named by $MIGRATION_LSP_RESULT
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    _main()
