"""Decoding in a worker process: a deadline per input, a memory ceiling, and a codec crash that costs a
worker, not the caller (``ReadOptions.decode_timeout_s``).

Why a process. Decoding runs in C (libjpeg-turbo, OpenJPEG, OpenJPH, CharLS, zlib) and cannot be stopped
from Python: a thread cannot be killed, ``SIGALRM`` reaches only the main thread and only between
bytecodes (a codec in C runs on), and the codecs share no time or memory limit. A process can be killed
at any moment, given its own address-space ceiling (``RLIMIT_AS``), and die of a segmentation fault
alone. So, when ``decode_timeout_s`` is set, :func:`read_isolated` and :func:`decode_isolated` hand the
input to a long-lived worker (a Python process running :func:`_serve`, started on first use and kept
for the next input) that runs the ordinary reader and sends back the float32 image and its
:class:`~cxr_edge.imaging.image.ImageInfo`; typed errors come back as the same classes.

* A decode past the deadline: the worker is killed (SIGKILL) and the caller gets
  :class:`~cxr_edge.errors.DecodeLimitError` (``limit="decode_time"``); the next input starts a fresh
  worker (about half a second).
* A decode past the memory ceiling: ``MemoryError`` in the worker (``limit="decode_memory"``), the
  worker is replaced.
* A worker that dies (a codec's segmentation fault or abort): ``limit="decoder_crash"``.
* Any other exception in the worker becomes :class:`~cxr_edge.errors.ImageDecodeError` naming its type.

Workers are pooled: a thread takes an idle worker or starts one, so threads decode in parallel as they
do in-process. A file is read by the worker itself (its path is sent, not its bytes); bytes given to
:func:`decode_isolated` travel over the pipe. The cost on normal files (the image coming back over a
pipe) is measured in docs/security.md ("Input limits"). POSIX only: elsewhere the reader decodes
in-process and logs a warning once.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace

import numpy as np

from cxr_edge import errors
from cxr_edge.errors import CxrEdgeError, DecodeLimitError, ImageDecodeError
from cxr_edge.imaging.image import TIMEOUT_ENV, ImageInfo, ReadOptions

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")  # JSON length, payload length
#: How long a worker may take to start (imports on a loaded cart); not part of any input's deadline.
START_TIMEOUT_S = 120.0
_READY = b"ready\n"


class _GoneError(Exception):
    """The worker's pipe closed (it died)."""


class _LateError(Exception):
    """The deadline passed."""


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, memory_mb: int):
        self.memory_mb = memory_mb
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        env.pop(TIMEOUT_ENV, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from {__name__} import _serve; _serve({int(memory_mb)})"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            env=env,
        )
        self.to_worker = self.proc.stdin.fileno()
        self.from_worker = self.proc.stdout.fileno()
        os.set_blocking(self.to_worker, False)
        _grow_pipe(self.from_worker)
        try:
            if bytes(self._read(len(_READY), time.monotonic() + START_TIMEOUT_S)) != _READY:
                raise _GoneError
        except (_GoneError, _LateError) as exc:
            self.close(kill=True)
            raise CxrEdgeError(
                "the isolated decoder did not start",
                expected=f"a worker ready within {START_TIMEOUT_S:.0f} s",
                received=f"exit status {self.proc.returncode}",
            ) from exc

    def decode(self, request: dict, payload: bytes, timeout_s: float):
        """Sends one request; returns the worker's reply and payload (raises _LateError or _GoneError)."""
        deadline = time.monotonic() + timeout_s
        head = json.dumps(request).encode("utf-8")
        self._write(_HEADER.pack(len(head), len(payload)) + head, deadline)
        if payload:
            self._write(payload, deadline)
        size, length = _HEADER.unpack(self._read(_HEADER.size, deadline))
        reply = json.loads(self._read(size, deadline).tobytes())
        return reply, self._read(length, deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            if not _ready(self.to_worker, select.POLLOUT, deadline):
                continue
            try:
                view = view[os.write(self.to_worker, view) :]
            except BlockingIOError:
                continue
            except OSError as exc:  # EPIPE: the worker is gone
                raise _GoneError from exc

    def _read(self, n: int, deadline: float):
        buf = np.empty(n, dtype=np.uint8)  # not zero-filled: the image is written over it
        view, pos = memoryview(buf), 0
        while pos < n:
            if not _ready(self.from_worker, select.POLLIN, deadline):
                continue  # never read a pipe poll did not call ready: the read would block
            got = os.readv(self.from_worker, [view[pos:]])
            if got == 0:
                raise _GoneError
            pos += got
        return buf

    def close(self, kill: bool = False) -> None:
        """Stops the worker: closing its input ends it; ``kill`` does not wait for that."""
        if kill:
            with contextlib.suppress(OSError):
                self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _ready(fd: int, event: int, deadline: float) -> bool:
    """Whether ``fd`` is ready (or closed) before the deadline; raises _LateError once it has passed.
    ``poll``, not ``select``: a node's descriptors may be numbered past select's 1024."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _LateError
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(1, int(min(left, 3600.0) * 1000))))


def _grow_pipe(fd: int) -> None:
    """Linux: a 1 MiB pipe buffer (64 KiB by default) halves the cost of bringing an image back."""
    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)


_IDLE: dict[int, list[_Worker]] = {}
_LOCK = threading.Lock()
_WARNED = []


def _take(memory_mb: int) -> _Worker:
    with _LOCK:
        idle = _IDLE.get(memory_mb)
        if idle:
            return idle.pop()
    return _Worker(memory_mb)


def _give(worker: _Worker) -> None:
    with _LOCK:
        _IDLE.setdefault(worker.memory_mb, []).append(worker)


@atexit.register
def shutdown() -> None:
    """Stops every idle worker (they also end on their own when this process exits)."""
    with _LOCK:
        workers = [w for idle in _IDLE.values() for w in idle]
        _IDLE.clear()
    for worker in workers:
        worker.close()


def prewarm(options: ReadOptions) -> None:
    """Starts one worker now (a node does at start-up), so the first input does not wait for it."""
    if options.decode_timeout_s is not None and os.name == "posix":
        _give(_take(options.decode_memory_mb))


def read_isolated(path: str | os.PathLike, options: ReadOptions) -> tuple[np.ndarray, ImageInfo]:
    """:func:`~cxr_edge.imaging.reader.read_image` of an existing file, in a worker (see the module)."""
    return _run({"path": os.fsdecode(path)}, b"", options)


def decode_isolated(data: bytes, name: str, options: ReadOptions) -> tuple[np.ndarray, ImageInfo]:
    """:func:`~cxr_edge.imaging.reader.decode_image` of bytes, in a worker (see the module)."""
    return _run({"name": name}, bytes(data), options)


def _run(request: dict, payload: bytes, options: ReadOptions) -> tuple[np.ndarray, ImageInfo]:
    timeout = float(options.decode_timeout_s)
    request["options"] = asdict(replace(options, decode_timeout_s=None))
    worker = _take(options.decode_memory_mb)
    try:
        reply, data = worker.decode(request, payload, timeout)
    except _LateError:
        worker.close(kill=True)
        raise DecodeLimitError(
            "decode_time",
            "decoding took longer than the per-input deadline",
            expected=f"a decode within {timeout:g} s",
            received="a decode still running (stopped)",
        ) from None
    except _GoneError:
        worker.close(kill=True)
        raise DecodeLimitError(
            "decoder_crash",
            "the decoder died on this input",
            expected="a decode that ends",
            received=_death(worker.proc.returncode),
        ) from None
    except BaseException:
        worker.close(kill=True)
        raise
    if reply.get("recycle"):
        worker.close(kill=True)
    else:
        _give(worker)
    if reply["ok"]:
        rows, cols = reply["shape"]
        image = data.view(np.float32).reshape(rows, cols)
        return image, ImageInfo(**reply["info"])
    raise _error(reply)


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        import signal

        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _error(reply: dict) -> CxrEdgeError:
    """The typed error the worker raised, rebuilt (same class, message, expected and received)."""
    cls = getattr(errors, reply.get("error") or "", None)
    if not (isinstance(cls, type) and issubclass(cls, CxrEdgeError)):
        return ImageDecodeError(
            "the decoder failed unexpectedly",
            expected="a decodable image or a typed error",
            received=f"an internal {reply.get('type', 'error')}",
        )
    error = cls.__new__(cls)
    CxrEdgeError.__init__(error, reply["message"], expected=reply["expected"], received=reply["received"])
    for key, value in reply.get("attrs", {}).items():
        setattr(error, key, value)
    return error


# ------------------------------------------------------------------------------------------- worker


def _serve(memory_mb: int) -> None:
    """The worker's loop: one request in, one reply out, until its input closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a codec printing to stdout must not corrupt the replies
    _die_with_parent()
    import cv2

    from cxr_edge.imaging.reader import decode_image, read_image

    with contextlib.suppress(ValueError, OSError):  # cannot lower below what is mapped already
        import resource

        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    source = sys.stdin.buffer
    out.write(_READY)
    out.flush()
    while True:
        header = source.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # the caller closed the pipe (or exited)
        size, length = _HEADER.unpack(header)
        request = json.loads(source.read(size))
        payload = source.read(length) if length else b""
        options = request["options"]
        options["reductions"] = tuple(options["reductions"])
        options = ReadOptions(**options)
        cv2.setNumThreads(max(1, options.threads))
        image = None
        try:
            if "path" in request:
                image, info = read_image(request["path"], options)
            else:
                image, info = decode_image(payload, name=request["name"], options=options)
            image = np.ascontiguousarray(image, dtype=np.float32)
            reply = {"ok": True, "shape": list(image.shape), "info": info.to_dict()}
        except CxrEdgeError as exc:
            reply = _error_reply(exc)
        except MemoryError:
            reply = _error_reply(
                DecodeLimitError(
                    "decode_memory",
                    "decoding needs more memory than the isolated decoder may use",
                    expected=f"at most {memory_mb} MiB of address space",
                    received="an allocation beyond it",
                )
            )
            reply["recycle"] = True
        except Exception as exc:
            reply = {"ok": False, "error": None, "type": type(exc).__name__}
        data = memoryview(image).cast("B") if reply["ok"] else b""
        head = json.dumps(reply).encode("utf-8")
        out.write(_HEADER.pack(len(head), len(data)) + head)
        out.write(data)
        out.flush()


def _error_reply(exc: CxrEdgeError) -> dict:
    attrs = {k: v for k, v in vars(exc).items() if k not in ("message", "expected", "received")}
    return {
        "ok": False,
        "error": type(exc).__name__,
        "message": exc.message,
        "expected": exc.expected,
        "received": exc.received,
        "attrs": {k: v for k, v in attrs.items() if isinstance(v, str | int | float | bool | type(None))},
    }


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when its parent dies, even in the middle of a decode."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(0)  # the parent died before the signal was armed


def posix() -> bool:
    """Whether isolation is available here; warns once where it is not."""
    if os.name == "posix":
        return True
    if not _WARNED:
        _WARNED.append(True)
        log.warning("decode_timeout_s needs POSIX pipes: decoding in-process without a deadline")
    return False
