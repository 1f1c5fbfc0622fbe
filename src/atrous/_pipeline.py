"""A pipeline of threads joined by bounded queues: items flow through stages in order.

Each stage runs in its own thread (the last in the caller's), so stages whose work releases the
GIL (OpenCV, ONNX Runtime, torch kernels, file writes) overlap; one thread per stage keeps the
items in order. The first error in any stage stops all and is raised in the caller.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

__all__ = ["run_pipeline"]

_END = object()  # the last item through a queue


class _Stopped(Exception):
    """Another stage failed: this one leaves quietly."""


def _put(channel: queue.Queue, item, stop: threading.Event) -> None:
    """Put into a bounded queue, giving up when the pipeline stops."""
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.05)
            return
        except queue.Full:
            continue
    raise _Stopped


def _get(channel: queue.Queue, stop: threading.Event):
    """Take from a queue, giving up when the pipeline stops."""
    while not stop.is_set():
        try:
            return channel.get(timeout=0.05)
        except queue.Empty:
            continue
    raise _Stopped


def run_pipeline(items: Iterator, infer: Callable, encode: Callable, depth: int = 4) -> None:
    """Feed ``items`` through ``infer`` then ``encode``, each stage in its own thread (encode in
    the caller's), joined by queues of ``depth`` items; the first error in any stage stops all
    and is raised here."""
    stop, errors = threading.Event(), []
    decoded, inferred = queue.Queue(depth), queue.Queue(depth)

    def guarded(loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the caller's thread
                errors.append(exc)
                stop.set()

        return run

    def decode_loop() -> None:
        for item in items:
            _put(decoded, item, stop)
        _put(decoded, _END, stop)

    def infer_loop() -> None:
        while (item := _get(decoded, stop)) is not _END:
            _put(inferred, infer(item), stop)
        _put(inferred, _END, stop)

    def encode_loop() -> None:
        while (item := _get(inferred, stop)) is not _END:
            encode(item)

    workers = [
        threading.Thread(target=guarded(loop), name=f"atrous-{name}", daemon=True)
        for name, loop in (("decode", decode_loop), ("infer", infer_loop))
    ]
    for worker in workers:
        worker.start()
    try:
        guarded(encode_loop)()
    finally:
        stop.set()  # after a failure; after success every stage has finished already
        for worker in workers:
            while worker.is_alive():  # a timed join keeps Ctrl-C deliverable
                worker.join(0.1)
    if errors:
        raise errors[0]
