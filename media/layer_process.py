"""A ``LayerMaker`` in a child process of its own (``python -m media.layer_process``): the
decoding, scaling and encoding of a made layer share neither the server's interpreter lock nor
its fate (a decoder that a broken stream crashes takes the child down, not the server).

The parent writes batches of the source's payloads to the child's standard input and reads
what each made from its standard output, one answer per batch, in a small binary framing
(no pickle: the child's output is not trusted more than its input). The child ends when its
input does."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
from typing import IO

from .layer_maker import LayerMaker, MadeOutput

COMMAND = (sys.executable, "-m", "media.layer_process")
_BATCH = struct.Struct("!BBI")  # resync, keyframe asked, items
_ITEM = struct.Struct("!HIBI")  # sequence number, timestamp, marker, payload size
_OUTPUT = struct.Struct("!BBHHHHI")  # too small, need keyframe, source w/h, made w/h, packets
_SIZE = struct.Struct("!I")
MAX_PAYLOAD = 1 << 16  # an RTP payload is smaller; anything larger is a broken framing
MAX_COUNT = 1 << 16
READY = b"R"  # the child's first byte, once it can take batches

Item = tuple[int, int, bool, bytes]


class LayerProcessError(Exception):
    """The child ended, or answered what it should not."""


def _read(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise LayerProcessError("the layer process ended")
    return data


def write_batch(stream: IO[bytes], items: list[Item], resync: bool, asked: bool) -> None:
    parts = [_BATCH.pack(resync, asked, len(items))]
    for seq, timestamp, marker, payload in items:
        parts.append(_ITEM.pack(seq, timestamp, marker, len(payload)))
        parts.append(payload)
    stream.write(b"".join(parts))
    stream.flush()


def read_batch(stream: IO[bytes]) -> tuple[list[Item], bool, bool]:
    resync, asked, count = _BATCH.unpack(_read(stream, _BATCH.size))
    if count > MAX_COUNT:
        raise LayerProcessError("a batch too large")
    items = []
    for _ in range(count):
        seq, timestamp, marker, size = _ITEM.unpack(_read(stream, _ITEM.size))
        if size > MAX_PAYLOAD:
            raise LayerProcessError("a payload too large")
        items.append((seq, timestamp, bool(marker), _read(stream, size)))
    return items, bool(resync), bool(asked)


def write_output(stream: IO[bytes], out: MadeOutput) -> None:
    source = out.source_size or (0, 0)
    made = out.made_size or (0, 0)
    parts = [_OUTPUT.pack(out.too_small, out.need_keyframe, *source, *made, len(out.packets))]
    for packet in out.packets:
        parts.append(_SIZE.pack(len(packet)))
        parts.append(packet)
    stream.write(b"".join(parts))
    stream.flush()


def read_output(stream: IO[bytes]) -> MadeOutput:
    too_small, need_keyframe, sw, sh, mw, mh, count = _OUTPUT.unpack(_read(stream, _OUTPUT.size))
    if count > MAX_COUNT:
        raise LayerProcessError("too many packets")
    out = MadeOutput(
        source_size=(sw, sh) if sw else None,
        made_size=(mw, mh) if mw else None,
        too_small=bool(too_small),
        need_keyframe=bool(need_keyframe),
    )
    for _ in range(count):
        (size,) = _SIZE.unpack(_read(stream, _SIZE.size))
        if size > MAX_PAYLOAD:
            raise LayerProcessError("a packet too large")
        out.packets.append(_read(stream, size))
    return out


class LayerProcess:
    """The parent's end: ``push`` sends one batch and waits for what it made (call it from a
    thread, never from the event loop). The keyword arguments are ``LayerMaker``'s."""

    def __init__(self, **maker: object) -> None:
        self._process = subprocess.Popen(
            [*COMMAND, json.dumps(maker)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the child's warnings go where the server's go
        )
        self._ready = False

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self) -> None:
        """Wait until the child has started (imported its codecs: most of a second)."""
        if self._ready:
            return
        stdout = self._process.stdout
        assert stdout is not None
        try:
            self._ready = True
            if _read(stdout, 1) != READY:
                raise LayerProcessError("the layer process said something else than ready")
        except (OSError, ValueError) as exc:
            raise LayerProcessError(f"the layer process failed ({type(exc).__name__})") from None

    def push(self, items: list[Item], resync: bool = False, asked: bool = False) -> MadeOutput:
        self.wait_ready()
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        try:
            write_batch(stdin, items, resync, asked)
            return read_output(stdout)
        except (OSError, ValueError, struct.error) as exc:
            raise LayerProcessError(f"the layer process failed ({type(exc).__name__})") from None

    def close(self, timeout: float = 2.0) -> None:
        """End the child (its input closes) and wait for it, killed if it lingers."""
        process = self._process
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    """The child: batches in on standard input, what each made out on standard output."""
    logging.basicConfig(level=logging.WARNING, format="layer process: %(message)s")
    parameters = json.loads(sys.argv[1])
    maker = LayerMaker(**parameters)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        stdout.write(READY)
        stdout.flush()
        while True:
            try:
                items, resync, asked = read_batch(stdin)
            except LayerProcessError:
                return  # the parent closed our input: the layer stops
            if resync:
                maker.resync()
            if asked:
                maker.ask_keyframe()
            write_output(stdout, maker.push(items))
    except BrokenPipeError:
        return
    finally:
        maker.close()


if __name__ == "__main__":
    main()
