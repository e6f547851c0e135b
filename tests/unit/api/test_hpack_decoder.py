"""`pyetcd.api.h2.hpack_decoder` against the `hpack` library: the same fields from the same
blocks over long runs that churn the dynamic table, and the RFC 7541 errors a client can cause."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from pyetcd.api.h2.hpack_decoder import HeaderDecodeError, HeaderDecoder

GRPC_GO = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/etcdserverpb.KV/Txn"),
    (b":authority", b"127.0.0.1:2379"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-go/1.58.3"),
    (b"te", b"trailers"),
]


def _fields(rng: random.Random, i: int) -> list[tuple[bytes, bytes]]:
    fields = list(GRPC_GO)
    fields.append((b"grpc-timeout", b"%dm" % rng.randint(1, 10_000)))
    if rng.random() < 0.3:
        fields.append((b"token", bytes(rng.choice(b"abcdefXYZ.-_") for _ in range(40))))
    if rng.random() < 0.1:
        fields.append((b"x-big-%d" % i, b"v" * rng.randint(100, 3000)))  # evicts, or empties
    return fields


@pytest.mark.parametrize("huffman", [True, False])
def test_decodes_what_hpack_encodes_while_the_table_churns(huffman: bool) -> None:
    rng = random.Random(7)
    encoder, reference, ours = Encoder(), Decoder(), HeaderDecoder()
    for i in range(3000):
        fields = _fields(rng, i)
        if i % 500 == 250:
            encoder.header_table_size = rng.choice([0, 256, 4096])  # a size update leads the next
        block = encoder.encode(fields, huffman=huffman)
        expected = [(bytes(n), bytes(v)) for n, v in reference.decode(block, raw=True)]
        assert ours.decode(block) == expected == fields


def test_never_indexed_and_literal_names() -> None:
    encoder, ours = Encoder(), HeaderDecoder()
    fields = [
        NeverIndexedHeaderTuple(b"authorization", b"secret"),
        (b"x-custom-name", b"1"),
        (b"x-custom-name", b"1"),  # now indexed from the dynamic table
    ]
    block = encoder.encode(fields)
    assert ours.decode(block) == [(bytes(n), bytes(v)) for n, v in fields]


def test_an_oversized_list_is_reported_after_the_table_is_updated() -> None:
    encoder, ours = Encoder(), HeaderDecoder(max_header_list_size=200)
    big = encoder.encode([(b"x-a", b"a" * 100), (b"x-b", b"b" * 100)])
    assert ours.decode(big) is None
    # The client's table now holds both entries: the next block refers to them by index.
    again = encoder.encode([(b"x-a", b"a" * 100)])
    assert len(again) == 1 and again[0] & 0x80  # one indexed field, not a literal
    assert ours.decode(again) == [(b"x-a", b"a" * 100)]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"\x80", "invalid table index 0"),
        (b"\xbe", "invalid table index 62"),  # the dynamic table is empty
        (b"\xff\xff\xff\xff\xff\xff", "integer too large"),
        (b"\xff", "truncated integer"),
        (b"\x40\x05ab", "truncated string"),
        (b"\x82\x3f\xe1\x1f", "dynamic table size update after a header field"),
        (b"\x3f\xe2\x1f", "dynamic table size update to 4097 above 4096"),
        (b"\x40\x81\xff\x01a", "invalid Huffman string"),  # EOS padding longer than 7 bits
    ],
)
def test_malformed_blocks_are_compression_errors(block: bytes, message: str) -> None:
    with pytest.raises(HeaderDecodeError, match=message):
        HeaderDecoder().decode(block)


def test_a_size_update_evicts_and_a_huge_entry_empties_the_table() -> None:
    ours = HeaderDecoder()
    assert ours.decode(b"\x40\x03x-a\x01a\x40\x03x-b\x01b") == [(b"x-a", b"a"), (b"x-b", b"b")]
    assert ours.decode(b"\xbe\xbf") == [(b"x-b", b"b"), (b"x-a", b"a")]  # newest first
    ours.decode(b"\x3f\x09")  # size 40: room for one 36-byte entry, the newest
    assert ours.decode(b"\xbe") == [(b"x-b", b"b")]
    with pytest.raises(HeaderDecodeError, match="invalid table index 63"):
        ours.decode(b"\xbf")
    ours.decode(b"\x3f\xe1\x1f")  # back to 4096
    ours.decode(b"\x40\x03x-c\x7f\xe9\x1f" + b"c" * 4200)  # larger than the table: empties it
    with pytest.raises(HeaderDecodeError, match="invalid table index 62"):
        ours.decode(b"\xbe")
