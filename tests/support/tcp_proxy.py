"""A loopback TCP proxy a test can cut and restore: a service (moto, the run store) that becomes unreachable
mid-run and comes back, without touching the service itself.

`TcpProxy(host, port)` listens on 127.0.0.1 (a port the OS picks) and forwards every connection to
host:port, both ways, byte for byte. `cut()` resets every open connection and, until `restore()`, answers
each new one with a reset (SO_LINGER 0): what a client sees when a network path or an endpoint goes away
(connection reset / refused), at once rather than after a timeout. Clients reach it at `url`.

It also notes each HTTP request line that goes through (`requests`: (method, path) in the order sent), so
a test can tell in which order a client sent its requests, as a packet capture would.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import struct
import threading

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN
_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.[01]\r\n")


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """127.0.0.1:<port> → target; `cut()` / `restore()`; `stop()` (or a with block) ends it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._stopped = threading.Event()
        #: Connections refused while cut (a test can wait until the client has really met the cut).
        self.refused = 0
        self.requests: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def is_cut(self) -> bool:
        with self._lock:
            return self._cut

    def cut(self) -> None:
        """From now on nothing gets through: open connections are reset, new ones too."""
        with self._lock:
            self._cut = True
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        """Connections go through again."""
        with self._lock:
            self._cut = False

    def stop(self) -> None:
        self._stopped.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refused = self._cut
                if refused:
                    self.refused += 1
            if refused:
                _reset(client)
                continue
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _note(self, data: bytes) -> None:
        found = [(m.decode(), p.decode(errors="replace")) for m, p in _REQUEST_LINE.findall(data)]
        if found:
            with self._lock:
                self.requests.extend(found)

    def _pump(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        pair = (client, upstream)
        with self._lock:
            if self._cut:
                for sock in pair:
                    _reset(sock)
                return
            self._open.update(pair)
        try:
            while not self._stopped.is_set():
                readable, _, _ = select.select(pair, [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        self._note(data)
                    (upstream if sock is client else client).sendall(data)
        except (OSError, ValueError):
            return  # reset by cut(), or the other side went away
        finally:
            with self._lock:
                self._open.difference_update(pair)
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()
