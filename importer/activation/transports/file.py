"""The file transport: one .eml per message in an outbox folder, each written atomically."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import uuid
from pathlib import Path

from importer.activation.transports.base import BaseTransport, OutgoingMessage
from importer.errors import TransportError

_SAFE_STEM = re.compile(r"[A-Za-z0-9_-]+")
# A message being written: `.<stem>.eml.<host>-<pid>.tmp`, renamed to `<stem>.eml` once complete.
# The owner in the name lets a later run remove what a killed one left (older versions wrote
# `.<stem>.eml.tmp`, without an owner).
_TEMPORARY = re.compile(r"\.[A-Za-z0-9_-]+\.eml(?:\.(?P<host>[A-Za-z0-9-]*)-(?P<pid>[0-9]+))?\.tmp")


@functools.cache
def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]


def _is_abandoned(temporary: re.Match[str]) -> bool:
    """Whether a temporary file's writer is gone (a process of this host that no longer runs)."""
    if temporary["pid"] is None:
        return True
    pid = int(temporary["pid"])
    if temporary["host"] != _host_tag() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


class FileTransport(BaseTransport):
    """Writes one `<member id>-<token hash prefix>.eml` per message to an outbox folder (mode 0600).

    Each file is written under a temporary name and renamed into place, so an .eml is always
    complete; a run killed mid-write leaves a hidden temporary file, which the next run removes.
    """

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)
        self._folder = os.fspath(self.outbox)
        self._ready = False
        self._swept = False
        self._temporary_suffix = f".eml.{_host_tag()}-{os.getpid()}.tmp"

    def send(self, message: OutgoingMessage, /) -> None:
        """Write the message atomically: a temporary file renamed into place."""
        stem = message.message_id.partition("@")[0]
        if not _SAFE_STEM.fullmatch(stem):
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", stem) or uuid.uuid4().hex
        final = os.path.join(self._folder, f"{stem}.eml")
        temporary = os.path.join(self._folder, f".{stem}{self._temporary_suffix}")
        try:
            if not self._ready:
                self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._sweep()
                self._ready = True
            # The file holds a live token: readable by its owner only.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                remaining = memoryview(message.data)
                while remaining:
                    remaining = remaining[os.write(descriptor, remaining) :]
            finally:
                os.close(descriptor)
            os.replace(temporary, final)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError):
                raise TransportError(
                    f"cannot write to the outbox {self.outbox}: {exc.strerror or exc}"
                ) from exc
            raise

    def _sweep(self) -> None:
        """Remove the temporary files of runs that were killed mid-write (once per transport)."""
        if self._swept:
            return
        self._swept = True
        with contextlib.suppress(OSError), os.scandir(self._folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    found = _TEMPORARY.fullmatch(entry.name)
                    if found is not None and _is_abandoned(found):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)

    def close(self) -> None:
        """Remove what killed runs left in the outbox, if this run did not already."""
        self._sweep()
