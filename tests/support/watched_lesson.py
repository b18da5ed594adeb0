"""A lesson that runs in a process of its own: a publisher and a classroom that decodes, and a
line on stdout for every tenth of a second with the frames decoded so far.

A test that loads the server hard (a fuzzer) runs this beside to see whether the lesson goes
on; in its own process, what it measures is the server, not the test's own load.

    python -m tests.support.watched_lesson WHIP_URL WHIP_TOKEN WHEP_URL WHEP_TOKEN

prints ``ready`` once the classroom decodes, then ``<time.monotonic()> <frames>`` lines, and
stops at the end of its standard input.
"""

from __future__ import annotations

import asyncio
import sys
import time

from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import use_loopback_only, whep_subscribe, whip_publish


async def main(whip_url: str, whip_token: str, whep_url: str, whep_token: str) -> None:
    use_loopback_only()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    publisher = await whip_publish(
        whip_url, whip_token, video=encode_vp8_clip(2.0), audio=encode_opus_clip(2.0)
    )
    classroom = await whep_subscribe(whep_url, whep_token)
    try:
        await classroom.wait_for_frames(30, timeout=15)
        print("ready", flush=True)
        ended = loop.create_task(stdin.read())
        while not ended.done():
            print(f"{time.monotonic():.3f} {classroom.video_frames}", flush=True)
            await asyncio.wait([ended], timeout=0.1)
    finally:
        await classroom.close()
        await publisher.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
