"""HTTP/2 for gRPC, framed in Python: the serving stack that replaces grpcio's per-call work.

grpcio's asyncio server answers about 2.7k do-nothing calls a second on one core here, while
HTTP/2 framed by hand on the same event loop answers about 25k (``bench/ceiling.py``, issue 14).
This package is that stack, built to be complete rather than a measuring instrument:

* ``connection``: the server side of one HTTP/2 connection as a pure state machine (bytes in,
  events and bytes out; flow control both ways, SETTINGS, PING, GOAWAY, CONTINUATION, stream
  states and limits), tested without sockets.
"""
