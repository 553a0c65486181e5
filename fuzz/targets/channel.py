"""The workers' private channel (pgdog_ev/workers/channel.py): length-prefixed JSON frames.

The peer is our own process, so what this guards against is a bug or a corruption on one side:
it must close the channel cleanly, never raise out of the decoder, never lose the messages
before the bad frame, and never answer differently for a different cut of the same bytes.

Input: one byte of chunking seed, then the stream. Oracles: the decoder raises nothing; every
chunking (whole, seeded, single bytes) yields the same messages and the same verdict (stopped
or not); every message is an object with a string ``op`` and encodes to a fixed point.
"""

from __future__ import annotations

from fuzz.chunks import chunkings
from fuzz.oracle import check
from fuzz.source import ByteSource
from pgdog_ev.workers.channel import Decoder, Message, encode


def _decode(chunks: list[bytes]) -> tuple[list[bytes], bool]:
    decoder = Decoder()
    out: list[Message] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    # Encoded, so that NaN (a metric's "unknown") compares equal to itself.
    return [encode(m) for m in out], decoder.error is not None


def worker_channel(data: bytes) -> None:
    src = ByteSource(data)
    seed = src.byte()
    stream = data[src.pos:]
    results = [_decode(chunks) for chunks in chunkings(stream, seed)]
    first = results[0]
    for other in results[1:]:
        check(other == first, "the decoder's messages or verdict depend on the chunking")
    for frame in first[0]:
        (message,) = Decoder().feed(frame)
        check(isinstance(message.get("op"), str), "a message without a string op got through")
        check(encode(message) == frame, "a message does not encode to a fixed point")
