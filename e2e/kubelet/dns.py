"""A tiny authoritative DNS responder for ``cluster.local`` (A records over UDP and TCP).

The pods' ``/etc/resolv.conf`` names it (``10.96.0.10``, bound in the cluster network
namespace). It answers from a lookup function (see :mod:`e2e.kubelet.services`), NXDOMAIN for
unknown names and every name outside the cluster domain (there is no upstream here), and
NOERROR without answers for other record types of a known name (AAAA, so resolvers move on).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

TYPE_A = 1
CLASS_IN = 1
RCODE_NXDOMAIN = 3
RCODE_FORMERR = 1
TTL = 5

Lookup = Callable[[str], list[str] | None]


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    while True:
        length = packet[offset]
        if length == 0:
            return ".".join(labels), offset + 1
        if length & 0xC0:
            raise ValueError("compressed names are not expected in questions")
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii").lower())
        offset += 1 + length


def answer(query: bytes, lookup: Lookup) -> bytes:
    """The response to one query message."""
    if len(query) < 12:
        raise ValueError("short DNS message")
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    recursion_desired = flags & 0x0100
    if qdcount != 1:
        return struct.pack("!HHHHHH", ident, 0x8000 | recursion_desired | RCODE_FORMERR, 0, 0, 0, 0)
    name, end = _read_name(query, 12)
    qtype, qclass = struct.unpack("!HH", query[end : end + 4])
    question = query[12 : end + 4]
    addresses = lookup(name.rstrip("."))
    rcode = RCODE_NXDOMAIN if addresses is None else 0
    answers = b""
    count = 0
    if addresses and qtype == TYPE_A and qclass == CLASS_IN:
        for address in addresses:
            # 0xC00C: a pointer to the question's name at offset 12.
            answers += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4)
            answers += ipaddress.IPv4Address(address).packed
            count += 1
    flags_out = 0x8000 | 0x0400 | recursion_desired | 0x0080 | rcode  # QR, AA, RD, RA
    header = struct.pack("!HHHHHH", ident, flags_out, 1, count, 0, 0)
    return header + question + answers


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = answer(data, self.lookup)
        except (ValueError, IndexError, struct.error) as exc:
            log.debug("bad DNS query from %s: %s", addr, exc)
            return
        assert self.transport is not None
        self.transport.sendto(reply, addr)


class DnsServer:
    """UDP and TCP listeners on one address, both made in a given network namespace."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self, udp: socket.socket, tcp: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self.lookup), sock=udp)
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = answer(await reader.readexactly(length), self.lookup)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
