"""HPACK decoding (RFC 7541) for the server side of pyetcd's HTTP/2 stack.

Every gRPC call opens with a header block. A client that sets deadlines (kube-apiserver, etcdctl,
any Go client with a context timeout) sends ``grpc-timeout`` as a literal that enters the
dynamic table, so every block changes the table and none can be served from a cache of decoded
blocks. The ``hpack`` library decodes such a block in about 50 microseconds; this decoder does the
same work with plain integers and slices, remembers the Huffman strings it has decoded (the same
few values recur), and keeps the table in step with the client's even when the decoded list turns
out too large (it reports that afterwards instead of stopping halfway). The static table and the
Huffman code come from ``hpack``.
"""

from __future__ import annotations

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

__all__ = ["DEFAULT_TABLE_SIZE", "HeaderDecodeError", "HeaderDecoder"]

DEFAULT_TABLE_SIZE = 4096
"""SETTINGS_HEADER_TABLE_SIZE's initial value, which the server never changes."""
ENTRY_OVERHEAD = 32
"""RFC 7541 4.1: an entry's size is its name and value plus 32."""
_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_STATIC_LEN = len(_STATIC)
_HUFFMAN_CACHE = 1024
_MAX_INT_SHIFT = 28  # no field needs more than 2**28: a longer integer is an attack


class HeaderDecodeError(Exception):
    """The block cannot be decoded: a COMPRESSION_ERROR of the whole connection."""


class HeaderDecoder:
    """The decoding context of one connection: its dynamic table and limits."""

    def __init__(
        self, *, max_table_size: int = DEFAULT_TABLE_SIZE, max_header_list_size: int = 1 << 20
    ) -> None:
        self.allowed_table_size = max_table_size  # what we advertised: the client's upper bound
        self.table_size = max_table_size  # what the client last chose
        self.max_header_list_size = max_header_list_size
        self._dynamic: list[tuple[bytes, bytes]] = []  # oldest first: index 62 is the last
        self._size = 0
        self._huffman: dict[bytes, bytes] = {}

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]] | None:
        """The block's fields in order; None when their list is over ``max_header_list_size``
        (the table is updated all the same, as the client's was)."""
        fields: list[tuple[bytes, bytes]] = []
        list_size = 0
        pos, n = 0, len(block)
        while pos < n:
            byte = block[pos]
            if byte & 0x80:  # indexed field
                index, pos = self._integer(block, pos, 0x7F)
                field = self._entry(index)
            elif byte & 0x40:  # literal with incremental indexing
                field, pos = self._literal(block, pos, 0x3F)
                self._add(field)
            elif byte & 0x20:  # dynamic table size update
                if fields:
                    raise HeaderDecodeError("dynamic table size update after a header field")
                size, pos = self._integer(block, pos, 0x1F)
                if size > self.allowed_table_size:
                    raise HeaderDecodeError(
                        f"dynamic table size update to {size} above {self.allowed_table_size}"
                    )
                self.table_size = size
                self._evict()
                continue
            else:  # literal without indexing (0000) or never indexed (0001)
                field, pos = self._literal(block, pos, 0x0F)
            fields.append(field)
            list_size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        return None if list_size > self.max_header_list_size else fields

    # ----- representations -----

    def _integer(self, block: bytes, pos: int, mask: int) -> tuple[int, int]:
        value = block[pos] & mask
        pos += 1
        if value < mask:
            return value, pos
        shift = 0
        n = len(block)
        while True:
            if pos >= n:
                raise HeaderDecodeError("truncated integer")
            byte = block[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, pos
            shift += 7
            if shift > _MAX_INT_SHIFT:
                raise HeaderDecodeError("integer too large")

    def _string(self, block: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(block):
            raise HeaderDecodeError("truncated string")
        huffman = block[pos] & 0x80
        length, pos = self._integer(block, pos, 0x7F)
        end = pos + length
        if end > len(block):
            raise HeaderDecodeError("truncated string")
        raw = block[pos:end]
        if not huffman:
            return raw, end
        decoded = self._huffman.get(raw)
        if decoded is None:
            try:
                decoded = decode_huffman(raw)
            except HPACKDecodingError as exc:
                raise HeaderDecodeError(f"invalid Huffman string: {exc}") from None
            if len(self._huffman) >= _HUFFMAN_CACHE:
                self._huffman.clear()
            self._huffman[raw] = decoded
        return decoded, end

    def _literal(self, block: bytes, pos: int, mask: int) -> tuple[tuple[bytes, bytes], int]:
        index, pos = self._integer(block, pos, mask)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = self._string(block, pos)
        value, pos = self._string(block, pos)
        return (name, value), pos

    # ----- the tables -----

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_LEN:
            return _STATIC[index - 1]
        dynamic = index - _STATIC_LEN
        if index == 0 or dynamic > len(self._dynamic):
            raise HeaderDecodeError(f"invalid table index {index}")
        return self._dynamic[-dynamic]

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        if size > self.table_size:
            # RFC 7541 4.4: an entry larger than the table empties it and is not added.
            self._dynamic.clear()
            self._size = 0
            return
        self._dynamic.append(field)
        self._size += size
        self._evict()

    def _evict(self) -> None:
        dropped = 0
        while self._size > self.table_size:
            name, value = self._dynamic[dropped]
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD
            dropped += 1
        if dropped:
            del self._dynamic[:dropped]
