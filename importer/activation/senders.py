"""The senders of a send run: its own thread, or up to `width` threads of their own.

A transport that can take several messages at once (SmtpTransport with `connections`) gets that
many senders; any other gets one, the run's own thread, exactly as a sequential loop. Each thread
sender has its own database connection, on which it records each message right after the
transport took it (sending.py), so a crash loses at most the message each sender had in flight.
The run hands out one message at a time (`start`) and waits for one to end (`next`): a message is
never queued behind another, and nothing is composed ahead of being sent.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.sql.dml import Insert, Update

from importer.activation.recording import Recorder

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Writer:
    """A database connection and its Recorder, used by one sender only.

    On SQLite the thread senders of a run take turns to record (`lock`): SQLite has one writer,
    and a writer that finds it busy sleeps in SQLite's busy handler (a millisecond or more) where
    a Python lock hands over at once.
    """

    def __init__(self, connection: Connection, lock: threading.Lock | None = None) -> None:
        self.connection = connection
        self._recorder = Recorder(connection)
        self._lock = lock

    def record(self, steps: list[tuple[Update | Insert, dict[str, Any]]]) -> None:
        """Run the statements in one committed transaction (Recorder.write), in turn on SQLite."""
        if self._lock is None:
            self._recorder.write(steps)
            return
        with self._lock:
            self._recorder.write(steps)


def parallel_senders(transport: object) -> int:
    """How many threads may call the transport's `send` at once: its `connections`, else 1."""
    width = getattr(transport, "connections", 1)
    return width if isinstance(width, int) and width >= 1 else 1


_Task = tuple[int, Item] | None


class Senders(Generic[Item, Outcome]):
    """Runs `deliver(item, writer)` for up to `width` items at once (see the module docstring).

    `deliver`'s exceptions, interrupts included, come back from `next` as the outcome: the run
    decides what they mean for the rest. `close` lets every thread finish its message and end.
    """

    def __init__(
        self, connection: Connection, *, width: int, deliver: Callable[[Item, Writer], Outcome]
    ) -> None:
        self.width = width
        self.busy = 0
        self._engine: Engine = connection.engine
        self._own = Writer(connection)
        self._deliver = deliver
        self._write_lock = threading.Lock() if connection.dialect.name == "sqlite" else None
        self._waiting: list[tuple[int, Item]] = []  # width 1: the item `next` runs here
        self._idle: list[queue.SimpleQueue[_Task[Item]]] = []
        self._inboxes: list[queue.SimpleQueue[_Task[Item]]] = []
        self._threads: list[threading.Thread] = []
        # A sender's item ended: its index, its outcome, and the sender's inbox (free again).
        self._ended: queue.SimpleQueue[
            tuple[int, Outcome | BaseException, queue.SimpleQueue[_Task[Item]]]
        ] = queue.SimpleQueue()

    @property
    def free(self) -> bool:
        """Whether a sender can take another item."""
        return self.busy < self.width

    def start(self, index: int, item: Item) -> None:
        """Hand the item (its index in the chunk) to a free sender."""
        assert self.free
        self.busy += 1
        if self.width == 1:
            self._waiting.append((index, item))
            return
        inbox = self._idle.pop() if self._idle else self._spawn()
        inbox.put((index, item))

    def next(self) -> tuple[int, Outcome | BaseException]:
        """Wait for a sender to finish its item: the item's index and its outcome."""
        assert self.busy
        if self._waiting:
            index, item = self._waiting.pop()
            self.busy -= 1
            try:
                return index, self._deliver(item, self._own)
            except BaseException as exc:
                return index, exc
        index, outcome, inbox = self._ended.get()
        self._idle.append(inbox)
        self.busy -= 1
        return index, outcome

    def _spawn(self) -> queue.SimpleQueue[_Task[Item]]:
        inbox: queue.SimpleQueue[_Task[Item]] = queue.SimpleQueue()
        thread = threading.Thread(
            target=self._serve, args=(inbox,), name=f"sender-{len(self._threads) + 1}", daemon=True
        )
        self._inboxes.append(inbox)
        self._threads.append(thread)
        thread.start()
        return inbox

    def _serve(self, inbox: queue.SimpleQueue[_Task[Item]]) -> None:
        writer: Writer | None = None
        try:
            while (task := inbox.get()) is not None:
                index, item = task
                outcome: Outcome | BaseException
                try:
                    if writer is None:
                        writer = Writer(self._engine.connect(), self._write_lock)
                    outcome = self._deliver(item, writer)
                except BaseException as exc:
                    outcome = exc
                self._ended.put((index, outcome, inbox))
        finally:
            if writer is not None:
                writer.connection.close()

    def close(self) -> None:
        """Let each thread finish the item it has, then end it."""
        for inbox in self._inboxes:
            inbox.put(None)
        for thread in self._threads:
            thread.join()
        self._inboxes, self._threads, self._idle = [], [], []

    def __enter__(self) -> Senders[Item, Outcome]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
