"""A small ICE-TCP active client (RFC 6544), for tests of the server's TCP media port: STUN
binding requests framed by a 2-byte length (RFC 4571), as a browser sends them.

aiortc cannot do ICE over TCP; Chromium can, but cannot be told to send garbage. This client
does both: ``check`` sends an authenticated binding request with a session's credentials (from
its offer and the server's answer), ``send_frame`` sends anything.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import struct

from aioice import stun

_LENGTH = struct.Struct("!H")


def credentials(answer_sdp: str) -> tuple[str, str]:
    """The server's ICE ufrag and password in an answer."""
    ufrag = re.search(r"a=ice-ufrag:(\S+)", answer_sdp)
    pwd = re.search(r"a=ice-pwd:(\S+)", answer_sdp)
    assert ufrag and pwd, answer_sdp
    return ufrag.group(1), pwd.group(1)


def tcp_candidates(answer_sdp: str) -> list[tuple[str, int]]:
    """The passive TCP candidates of an answer."""
    found = re.findall(
        r"a=candidate:\S+ 1 tcp \d+ (\S+) (\d+) typ host tcptype passive", answer_sdp
    )
    return sorted({(host, int(port)) for host, port in found})


def binding_request(
    server_ufrag: str, server_pwd: str, client_ufrag: str, nominate: bool = False
) -> stun.Message:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{server_ufrag}:{client_ufrag}"
    request.attributes["PRIORITY"] = 1518280447
    request.attributes["ICE-CONTROLLING"] = secrets.randbits(64)
    if nominate:
        request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(server_pwd.encode())
    request.add_fingerprint()
    return request


class IceTcpClient:
    """One TCP connection to the server's media port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, address: tuple[str, int], source: str | None = None) -> IceTcpClient:
        reader, writer = await asyncio.open_connection(
            address[0], address[1], local_addr=(source, 0) if source else None
        )
        return cls(reader, writer)

    def send_frame(self, data: bytes) -> None:
        self.writer.write(_LENGTH.pack(len(data)) + data)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv_frame(self) -> bytes:
        (length,) = _LENGTH.unpack(await self.reader.readexactly(2))
        return await self.reader.readexactly(length)

    async def check(
        self, server_ufrag: str, server_pwd: str, client_ufrag: str, within: float = 5.0
    ) -> stun.Message:
        """Send an authenticated binding request; the server's answer to it (its own checks,
        which it may send meanwhile, are skipped)."""
        request = binding_request(server_ufrag, server_pwd, client_ufrag)
        self.send_frame(bytes(request))
        async with asyncio.timeout(within):
            while True:
                message = stun.parse_message(await self.recv_frame())
                if message.transaction_id == request.transaction_id:
                    return message

    async def closed(self, within: float = 10.0) -> bool:
        """Whether the server closes the connection within ``within`` s (reading and
        dropping whatever it sends meanwhile)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()
