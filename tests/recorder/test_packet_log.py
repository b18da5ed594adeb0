"""The packet log survives what a crash does to a file: a record cut short by kill -9, or
garbage after the last block a disk kept through a power cut; and it can be followed while
it grows."""

from __future__ import annotations

from pathlib import Path

from recorder import packet_log
from recorder.packet_log import End, Epoch, LogFile, LogTail, SenderReport


def _write(path: Path, count: int) -> list[bytes]:
    log = LogFile(path)
    chunks = [packet_log.epoch_record({"mime_type": "video/VP8", "clock_rate": 90000})]
    payloads = [bytes([i % 256]) * (100 + i) for i in range(count)]
    for i, payload in enumerate(payloads):
        chunks.append(
            packet_log.packet_record(1000.0 + i / 30, 3000 * i, 1234, i, i % 2, 96, payload)
        )
    chunks += [packet_log.sender_report_record(1000.5, 4500), packet_log.end_record(1001.0)]
    log.write(chunks)
    log.close()
    return payloads


def _read_all(path: Path) -> tuple[list[object], LogTail]:
    tail = LogTail(path)
    records: list[object] = []
    while batch := tail.read(1 << 12):
        records += batch
    return records, tail


def test_records_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "camera.video.rtplog"
    payloads = _write(path, 50)
    records, tail = _read_all(path)
    assert isinstance(records[0], Epoch) and records[0].info["clock_rate"] == 90000
    packets = [r for r in records if type(r) is tuple]
    assert [bytes(p[6]) for p in packets] == payloads
    assert [p[3] for p in packets] == list(range(50))
    assert packets[3][:6] == (1000.0 + 3 / 30, 9000, 1234, 3, 1, 96)
    assert records[-2] == SenderReport(1000.5, 4500) and records[-1] == End(1001.0)
    assert tail.valid_bytes == path.stat().st_size and not tail.broken


def test_a_record_cut_short_is_left_out_and_everything_before_it_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "log"
    payloads = _write(path, 20)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 50)  # the two small records after it, and into the last packet
    records, tail = _read_all(path)
    packets = [r for r in records if type(r) is tuple]
    assert [bytes(p[6]) for p in packets] == payloads[: len(packets)]
    assert len(packets) == 19
    assert tail.valid_bytes < path.stat().st_size and not tail.broken


def test_garbage_after_the_last_good_record_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "log"
    payloads = _write(path, 10)
    good = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x00" * 4096)  # what a file system may show after losing power
    records, tail = _read_all(path)
    assert [bytes(r[6]) for r in records if type(r) is tuple] == payloads
    assert tail.valid_bytes == good and tail.broken

    flipped = bytearray(path.read_bytes()[:good])
    flipped[-30] ^= 0xFF  # inside the last record: its checksum no longer holds
    path.write_bytes(bytes(flipped))
    records, tail = _read_all(path)
    assert not isinstance(records[-1], End) and tail.broken


def test_a_log_is_followed_while_it_grows_even_mid_record(tmp_path: Path) -> None:
    path = tmp_path / "log"
    tail = LogTail(path)
    assert tail.read() == []  # not there yet
    log = LogFile(path)
    record = packet_log.packet_record(1.0, 90, 7, 1, 1, 96, b"x" * 500)
    log.write([packet_log.epoch_record({"clock_rate": 48000})])
    with open(path, "ab") as raw:
        raw.write(record[:200])
        raw.flush()
        assert [type(r) for r in tail.read()] == [Epoch]
        assert tail.read() == []  # half a record: wait for the rest
        raw.write(record[200:])
    (packet,) = tail.read()
    assert type(packet) is tuple and bytes(packet[6]) == b"x" * 500
    log.close()
