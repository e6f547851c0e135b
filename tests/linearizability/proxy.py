"""A TCP proxy in front of a member's peer port that a test can cut (a network partition).

Peers reach a member only through its proxy (the cluster advertises the proxy's URL as the
member's peer URL), so cutting the proxy stops all peer traffic INTO that member: new and open
connections through it stop moving bytes, as on a partitioned network (nothing is reset; TCP
delivers what was in flight once the cut heals, or the peers give up on the connection).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class PeerProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``; :meth:`cut`/:meth:`heal`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(
            target=self._accept, name=f"proxy-{self.port}", daemon=True
        )
        self.acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def _track(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.add(sock)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._track(conn)
            thread = threading.Thread(target=self._connect, args=(conn,), daemon=True)
            with self.lock:
                self.threads = [t for t in self.threads if t.is_alive()]
                self.threads.append(thread)
            thread.start()

    def _connect(self, conn: socket.socket) -> None:
        self.flowing.wait()  # a connection opened during a cut goes nowhere until it heals
        if self.closed.is_set():
            self._close(conn)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5.0)
        except OSError:
            self._close(conn)
            return
        upstream.settimeout(None)
        self._track(upstream)
        back = threading.Thread(target=self._pump, args=(upstream, conn), daemon=True)
        with self.lock:
            self.threads.append(back)
        back.start()
        self._pump(conn, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                self.flowing.wait()  # cut: hold the bytes, as a partitioned network does
                if self.closed.is_set():
                    return
                dst.sendall(data)
        except OSError:
            self._close(src)
            self._close(dst)

    def _close(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, join the threads."""
        self.closed.set()
        self.flowing.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            sockets = list(self.sockets)
            threads = [*self.threads, self.acceptor]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self._close(sock)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            raise RuntimeError(f"proxy {self.port}: threads did not stop: {stuck}")
