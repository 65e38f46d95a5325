"""A TCP forwarder the tests can cut: a database outage that touches no one else's connections."""

from __future__ import annotations

import contextlib
import socket
import threading


class Cuttable:
    """Forwards 127.0.0.1:``port`` to ``host:target``; :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, host: str, target: int) -> None:
        self.host, self.target = host, target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.up = threading.Event()
        self.up.set()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection((self.host, self.target))
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self, seconds: float) -> None:
        """Drop every forwarded connection now and refuse new ones for ``seconds``."""
        self.up.clear()
        with self.lock:
            dropped, self.sockets = self.sockets, []
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        threading.Timer(seconds, self.up.set).start()

    def close(self) -> None:
        self.listener.close()
        self.cut(0)
