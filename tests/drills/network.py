"""A network between an agent and its control plane that a drill can break."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

__all__ = ["Proxy"]


class Proxy:
    """A TCP proxy in front of ``port``, on a port of its own: ``cut()`` drops every
    connection through it at once (a reset, as a broken network does); while
    ``dropping`` it resets each new connection as soon as it is made (a network that
    drops them); ``refuse()`` stops listening (connections are refused, as by a host where
    nothing listens) until ``listen()``."""

    def __init__(self, port: int) -> None:
        self._target = port
        self.dropping = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0
        self.listen()
        self.address = f"127.0.0.1:{self.port}"

    def listen(self) -> None:
        if self._listener is None:
            self._listener = socket.create_server(("127.0.0.1", self.port))
            self.port = self._listener.getsockname()[1]
            threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def refuse(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                near, _ = listener.accept()
            except OSError:
                return
            if self.dropping:
                _reset(near)
                continue
            try:
                far = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            except OSError:
                _reset(near)
                continue
            far.settimeout(None)
            with self._lock:
                self._open += [near, far]
            threading.Thread(target=_pump, args=(near, far), daemon=True).start()
            threading.Thread(target=_pump, args=(far, near), daemon=True).start()

    def cut(self) -> int:
        """Reset every open connection; returns how many there were."""
        with self._lock:
            cut, self._open = self._open, []
        for conn in cut:
            _reset(conn)
        return len(cut) // 2

    def close(self) -> None:
        self.refuse()
        self.cut()


def _reset(conn: socket.socket) -> None:
    """Abort ``conn`` with a reset; shutting it down first wakes the thread reading it
    (a close alone would leave the socket open under that thread's recv)."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
