"""A helper process forked beside the importing process, reporting back through a pipe.

The checking worker (checking.py) and the rejected.xlsx writer (report.py) follow the same rules:
forked only where that is safe (can_fork), killed with the process that forked them, and whatever
stops them raised in the importing process as one clear error, never a hang.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

from importer.errors import ImporterError

_PR_SET_PDEATHSIG = 1


def can_fork() -> bool:
    """Whether work may go to a forked helper.

    Linux only, and only from a single-threaded process that may have children: forking a process
    with other threads running can leave the child holding a lock no thread will release, and a
    daemonic process (a multiprocessing pool's worker) may not start one. Otherwise, inline.
    """
    return can_spawn() and threading.active_count() == 1


def can_spawn() -> bool:
    """Whether work may go to a helper started as a fresh interpreter (Helper's `spawn`): from a
    process with other threads too (a job worker, the portal), at the cost of the helper's imports.

    Linux only (the helper dies with its parent through prctl), and not from a daemonic process.
    """
    return sys.platform == "linux" and not multiprocessing.current_process().daemon


@dataclass(frozen=True, slots=True)
class _Failure:
    """What stopped the helper, sent in place of its next message."""

    error: BaseException


class Helper:
    """`work(send, *args)` in a forked process; its messages come back, in order, through recv().

    `doing` names the work in errors ("checking the rows"); `tail` ends them ("; nothing was
    written."). If the importing process stops first, for whatever reason, the helper's next send
    fails (it holds no copy of the pipe's reading end) and the kernel kills it anyway.

    `ahead_bytes`: how far the helper may run ahead of recv(), in pickled messages held in its own
    memory and sent by a thread of its own (0: each send waits for the pipe, about a message ahead).
    `spawn`: start the helper as a fresh interpreter (can_spawn) instead of a fork (can_fork):
    `work` and `args` are then pickled, and the helper shares nothing with this process.
    """

    def __init__(
        self,
        work: Callable[..., None],
        *args: Any,
        doing: str,
        error: type[ImporterError] = ImporterError,
        tail: str = ".",
        ahead_bytes: int = 0,
        spawn: bool = False,
    ) -> None:
        self._doing, self._error, self._tail = doing, error, tail
        context: multiprocessing.context.SpawnContext | multiprocessing.context.ForkContext = (
            multiprocessing.get_context("spawn") if spawn else multiprocessing.get_context("fork")
        )
        self._receiver, sender = context.Pipe(duplex=False)
        # A fork inherits the reading end and closes it; a spawned helper is given only what it needs.
        inherited = None if spawn else self._receiver
        self._process = context.Process(
            target=_run, args=(work, args, sender, inherited, doing, tail, ahead_bytes), daemon=True
        )
        if not spawn:
            gc.freeze()  # the child's collections then leave the parent's objects (and pages) alone
        # Ctrl-C belongs to the importing process. It waits until the fork is done, so neither
        # process is interrupted inside multiprocessing's bookkeeping (which would swallow it or
        # print a traceback), and the helper ignores it: it stops with the importing process.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._process.start()
        except BaseException:
            self._receiver.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if not spawn:
                gc.unfreeze()
            sender.close()

    def recv(self) -> Any:
        """The helper's next message; what stopped it, raised."""
        try:
            message = self._receiver.recv()
        except (EOFError, OSError):  # gone between messages, or half-way through one
            self._process.join()
            raise self._error(
                f"the process {self._doing} stopped unexpectedly (exit code {self._process.exitcode})"
                f"{self._tail}"
            ) from None
        except Exception as exc:  # what it sent cannot be read back (an exception of odd shape)
            raise self._error(f"{self._doing} failed ({type(exc).__name__}: {exc}){self._tail}") from exc
        if isinstance(message, _Failure):
            raise message.error
        return message

    def stop(self) -> None:
        """Close the pipe; kill the helper if it still runs; reap it."""
        self._receiver.close()
        if self._process.is_alive():
            self._process.kill()
        self._process.join()


def _run(
    work: Callable[..., None],
    args: tuple[Any, ...],
    sender: Any,
    receiver: Any,
    doing: str,
    tail: str,
    ahead_bytes: int,
) -> None:
    """The helper's side: do the work; send what went wrong instead, if anything."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt pending since the fork is dropped
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if receiver is not None:
        receiver.close()  # else its own copy would keep the pipe open after the importing process died
    _die_with_parent()
    outbox = _Outbox(sender, ahead_bytes) if ahead_bytes else None
    send = outbox.send if outbox else sender.send
    try:
        try:
            work(send, *args)
        except BrokenPipeError:
            pass  # the importing process has stopped; nobody is listening
        except BaseException as exc:
            exc.add_note(traceback.format_exc())  # for whoever debugs a bug; users see one line
            try:
                send(_Failure(exc))
            except OSError:  # the pipe: nobody is listening any more
                pass
            except Exception:  # an exception that cannot be pickled: its text, then
                send(_Failure(ImporterError(f"{doing} failed ({type(exc).__name__}: {exc}){tail}")))
        if outbox:
            outbox.close()  # everything sent, in order
    except OSError:
        pass  # the pipe broke: the importing process has stopped, or says why it could not read
    finally:
        sender.close()


class _Outbox:
    """Messages pickled at once and written to the pipe by a thread, up to `limit` bytes ahead.

    The helper goes on working while the importing process is busy (on PostgreSQL it waits for the
    server most of the time): a big file is checked, and its report written, long before the last
    rows are saved. The limit bounds the memory that costs.
    """

    def __init__(self, connection: Any, limit: int) -> None:
        self._connection, self._limit = connection, limit
        self._queue: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._closed = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._write, name="outbox", daemon=True)
        self._thread.start()

    def send(self, message: object) -> None:
        data = bytes(ForkingPickler.dumps(message))
        with self._changed:
            self._changed.wait_for(lambda: self._error or not self._queue or self._held < self._limit)
            if self._error is not None:
                raise self._error
            self._queue.append(data)
            self._held += len(data)
            self._changed.notify_all()

    def close(self) -> None:
        """Wait until every message is written (or writing failed: raised)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _write(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                data = self._queue[0]
            try:
                self._connection.send_bytes(data)
            except BaseException as exc:
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()
                return
            with self._changed:
                self._queue.popleft()
                self._held -= len(data)
                self._changed.notify_all()


def _die_with_parent() -> None:
    """Be killed when the process that forked this one dies, however it dies.

    Otherwise a helper of an import killed with SIGKILL would go on working and hold its inherited
    copy of the database connection (on PostgreSQL, the import's open transaction) until done.
    """
    parent = multiprocessing.parent_process()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent.pid:  # it died before the line above
        os._exit(1)
