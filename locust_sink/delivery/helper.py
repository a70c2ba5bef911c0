"""The encoder helper process: turns request records into bulk lines off Locust's CPU.

Why: a Locust process runs on one CPU, and building and serialising each request's document is the largest
part of the sink's work there (docs/benchmarks-history.md). With the helper, Locust's process only marshals the
records' fields, as the buffer already stores them flat (C code), and gets the batch's NDJSON back as one
bytes object; the helper encodes them with the same `RequestEncoder` on whatever CPU is free.

Nothing depends on the helper: if it cannot start, dies, answers garbage or too slowly, or a batch holds a value
marshal cannot carry (a custom object in a request's context), that batch is encoded in Locust's process, with
the same code and the same bytes, and the reason is logged once. The helper imports neither Locust nor gevent,
ignores Ctrl-C (the final flush still needs it) and exits when its stdin closes, so it cannot outlive Locust.

In file mode the helper also appends the lines to the run's NDJSON file itself, so that Locust's process
neither reads them back nor writes them (most of that cost is the kernel's page-cache copy). Locust's process
writes the other documents (snapshots, run documents) to the same file, only between the helper's writes (the
delivery loop waits for each answer), and both open it for appending. If the helper cannot write, it cuts the
file back to where it was and answers an error; Locust's process then writes that batch itself.

Protocol on the helper's stdin/stdout: frames of a 4-byte little-endian length and a marshal payload.
Request: (node, action_head, max_leaf, flat_fields, path or None). Reply: (count, body): the
records' bulk-format NDJSON (action line, document, ...) as one bytes object, so that Locust's process gets no
object per record back; with a path, (count, bytes_written) once the lines are in the file; or ("error", message).
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..records import RECORD_WIDTH, RequestEncoder

log = logging.getLogger("locust_sink")

REPLY_TIMEOUT = 30.0  # seconds; a batch takes milliseconds, so this only catches a stuck helper
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding locust_sink/


class EncoderUnavailable(Exception):
    """The helper cannot encode this batch (the message says why); encode it in-process instead."""


class EncoderProcess:
    """Parent side: starts the helper on first use and sends it one batch at a time (from one greenlet)."""

    def __init__(self) -> None:
        self._proc: Any = None
        self.broken: str | None = None  # why the helper is no longer used, once it failed
        self.batches = 0  # batches encoded by the helper
        self.file_batches = 0  # of which the helper also wrote to the NDJSON file (file mode)
        self.fallbacks = 0  # batches encoded in-process although the helper was enabled

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        from gevent import subprocess  # cooperative pipes; imported here so that the helper never loads gevent

        code = (
            f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
            "from locust_sink.delivery.helper import serve; serve()"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )

    def encode(self, node: str, action_head: bytes, flat: list[Any], max_leaf: int = 0) -> bytes:
        """Encode `flat` in the helper; raises EncoderUnavailable (never anything else) when it cannot."""
        body = self._exchange((node, action_head, max_leaf, flat, None), len(flat) // RECORD_WIDTH)
        assert type(body) is bytes
        return body

    def encode_to_file(self, node: str, action_head: bytes, flat: list[Any], path: Path, max_leaf: int = 0) -> int:
        """Encode `flat` in the helper and have it append the lines to `path`; returns the bytes written.
        Raises EncoderUnavailable when it cannot (the file is then as it was: write the batch yourself)."""
        written = self._exchange((node, action_head, max_leaf, flat, str(path)), len(flat) // RECORD_WIDTH)
        assert type(written) is int
        self.file_batches += 1
        return written

    def _exchange(self, request: tuple[Any, ...], n: int) -> bytes | int:
        if self.broken:
            raise EncoderUnavailable(self.broken)
        to_file = request[4] is not None
        try:
            payload = marshal.dumps(request)
        except ValueError as exc:  # e.g. a custom object in a context: only this batch is affected
            raise EncoderUnavailable(f"a record holds a value marshal cannot carry ({exc})") from None
        import gevent

        try:
            if self._proc is None:
                self._start()
            proc = self._proc
            with gevent.Timeout(REPLY_TIMEOUT, EncoderUnavailable(f"no answer within {REPLY_TIMEOUT:.0f} s")):
                proc.stdin.write(len(payload).to_bytes(4, "little") + payload)
                proc.stdin.flush()
                head = proc.stdout.read(4)
                if len(head) < 4:
                    raise EncoderUnavailable(f"the helper process exited (code {proc.poll()})")
                reply = marshal.loads(proc.stdout.read(int.from_bytes(head, "little")))
            if len(reply) == 2 and reply[0] == "error":
                raise EncoderUnavailable(f"the helper failed: {reply[1]}")
            count, body = reply
            if to_file:
                if count != n or type(body) is not int or body <= 0:
                    raise EncoderUnavailable("the helper answered with a wrong record count")
            elif count != n or type(body) is not bytes or body.count(b"\n") != 2 * n:
                raise EncoderUnavailable("the helper answered with a wrong record count")
        except EncoderUnavailable as exc:
            self._give_up(str(exc))
            raise
        except Exception as exc:  # OSError (broken pipe), EOFError/ValueError (a torn reply), ...
            self._give_up(f"{type(exc).__name__}: {exc}")
            raise EncoderUnavailable(self.broken or "") from None
        except BaseException:
            # Killed mid-exchange (final deadline, second Ctrl-C): the pipe may hold half a frame.
            self._give_up("interrupted during an exchange")
            raise
        self.batches += 1
        return body

    def _give_up(self, reason: str) -> None:
        if not self.broken:
            self.broken = reason
            log.warning(
                "locust-sink: encoding in Locust's process from now on (the encoder helper process: %s)", reason
            )
        self.close()

    def close(self) -> None:
        """Stop the helper: closing its stdin ends it; it is killed if it does not exit at once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(Exception):  # a broken pipe while closing changes nothing
                stream.close()
        try:
            proc.wait(timeout=2)
        except Exception:  # noqa: BLE001 - TimeoutExpired, or interrupted: make sure it is gone
            proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=2)


def serve() -> None:
    """Helper side: encode batches from stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for Locust; the final flush still needs us
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    encoders: dict[tuple[str, bytes, int], RequestEncoder] = {}
    files = _AppendFiles()
    try:
        while True:
            head = stdin.read(4)
            if len(head) < 4:
                return
            payload = stdin.read(int.from_bytes(head, "little"))
            try:
                node, action_head, max_leaf, flat, path = marshal.loads(payload)
                encoder = encoders.get((node, action_head, max_leaf))
                if encoder is None:
                    encoder = encoders[(node, action_head, max_leaf)] = RequestEncoder(node, action_head, max_leaf)
                lines: list[bytes] = []
                n = len(flat) // RECORD_WIDTH
                encoder.encode(flat, 0, n, lines)
                body = RequestEncoder.body(lines)
                reply = marshal.dumps((n, files.append(path, body) if path else body))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which encodes the batch itself
                reply = marshal.dumps(("error", f"{type(exc).__name__}: {exc}"))
            stdout.write(len(reply).to_bytes(4, "little") + reply)
            stdout.flush()
    finally:
        files.close()


class _AppendFiles:
    """The helper's open NDJSON files (file mode): appended to, flushed after every batch."""

    MAX_OPEN = 8  # one per run id; a long web-UI session makes many runs, one at a time

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}

    def append(self, path: str, body: bytes) -> int:
        handle = self._handles.get(path)
        if handle is None:
            if len(self._handles) >= self.MAX_OPEN:
                self._handles.pop(next(iter(self._handles))).close()
            handle = self._handles[path] = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open across batches
        size = os.fstat(handle.fileno()).st_size
        try:
            view, done = memoryview(body), 0
            while done < len(body):  # unbuffered: nothing is left behind in a buffer when a write fails
                done += handle.write(view[done:])
        except BaseException:
            # no torn batch in the file: the parent writes the whole batch itself after this error
            with contextlib.suppress(Exception):
                os.ftruncate(handle.fileno(), size)
            self._handles.pop(path, None)
            with contextlib.suppress(Exception):
                handle.close()
            raise
        return len(body)

    def close(self) -> None:
        for handle in self._handles.values():
            with contextlib.suppress(Exception):
                handle.close()
        self._handles.clear()
