"""Publish over WHIP with FFmpeg's own ``whip`` muxer (through PyAV), as a real encoder would.

This is a second, independent WHIP implementation next to the aiortc publisher: H.264 +
Opus, offer with no candidates, ICE-lite-like connectivity (it only sends binding requests to
the first UDP host candidate of the answer), passive DTLS.

PyAV calls ``avformat_write_header`` and ``av_write_trailer`` while holding the GIL, and the
muxer performs the whole WHIP exchange there (HTTP POST, ICE, DTLS on open; HTTP DELETE on
close). A server running in the same Python process would be frozen for that time and the
handshake would time out, so :func:`publish_with_ffmpeg` runs the muxer in a child process
(which stays in the caller's network namespace) and just waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fractions
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .media import AUDIO_CLOCK_RATE, OPUS_FRAME_SAMPLES, make_pattern_frame, tone_samples

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_p256_cert(dir: Path) -> tuple[Path, Path]:
    """Write a self-signed EC P-256 certificate and its key as PEM; return (cert, key) paths.

    FFmpeg's own generated DTLS certificate uses a curve aiortc's DTLS rejects; P-256 works.
    """
    dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncclass-test-ffmpeg")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path = dir / "whip-cert.pem"
    key_path = dir / "whip-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # SEC1 ("EC PRIVATE KEY") is read by every TLS backend FFmpeg may be built with.
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _publish_here(
    whip_url: str,
    token: str,
    seconds: float,
    width: int,
    height: int,
    fps: int,
    gop: int,
    cert_dir: Path,
    bitrate: int = 600_000,
) -> int:
    """Run the whip muxer in this process; return the number of video frames written."""
    cert_file, key_file = make_p256_cert(cert_dir)
    options = {"authorization": token, "cert_file": str(cert_file), "key_file": str(key_file)}
    container = av.open(whip_url, "w", format="whip", options=options)
    try:
        video = container.add_stream("libx264", rate=fps)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.bit_rate = bitrate
        video.codec_context.gop_size = gop
        video.codec_context.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            # The muxer sets GLOBAL_HEADER, so SPS/PPS go to extradata and it re-inserts them
            # before each IDR itself; the fixed IDR grid keeps the drawn keyframe flag true.
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        # The muxer accepts only stereo 48 kHz Opus.
        audio = container.add_stream("libopus", rate=AUDIO_CLOCK_RATE)
        audio.layout = "stereo"
        audio.format = "s16"
        audio.bit_rate = 64_000

        # Opening the muxer runs the POST, ICE and DTLS; pacing starts once media can flow.
        container.start_encoding()
        video_frames = max(1, round(seconds * fps))
        audio_frames = max(1, round(seconds * AUDIO_CLOCK_RATE / OPUS_FRAME_SAMPLES))
        samples = tone_samples(audio_frames * OPUS_FRAME_SAMPLES)
        video_tb = fractions.Fraction(1, fps)
        audio_tb = fractions.Fraction(1, AUDIO_CLOCK_RATE)
        start = time.monotonic()
        v = a = 0
        while v < video_frames or a < audio_frames:
            due_v = v / fps if v < video_frames else float("inf")
            due_a = a * OPUS_FRAME_SAMPLES / AUDIO_CLOCK_RATE if a < audio_frames else float("inf")
            due = min(due_v, due_a)
            delay = start + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if due_v <= due_a:
                keyframe = v % gop == 0
                picture = make_pattern_frame(v, width, height, keyframe)
                picture.pts = v
                picture.time_base = video_tb
                if keyframe:
                    picture.pict_type = av.video.frame.PictureType.I
                container.mux(video.encode(picture))
                v += 1
            else:
                chunk = samples[a * OPUS_FRAME_SAMPLES * 2 : (a + 1) * OPUS_FRAME_SAMPLES * 2]
                frame = av.AudioFrame.from_ndarray(
                    chunk.reshape(1, -1), format="s16", layout="stereo"
                )
                frame.sample_rate = AUDIO_CLOCK_RATE
                frame.pts = a * OPUS_FRAME_SAMPLES
                frame.time_base = audio_tb
                container.mux(audio.encode(frame))
                a += 1
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
        return v
    finally:
        # Closing writes the trailer, which sends the DELETE for the session.
        container.close()


def publish_with_ffmpeg(
    whip_url: str,
    token: str,
    seconds: float,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    *,
    gop: int = 30,
    bitrate: int = 600_000,
    timeout: float | None = None,
) -> int:
    """Publish ``seconds`` of H.264 + Opus over WHIP with FFmpeg; return video frames written.

    Blocks until done (use ``asyncio.to_thread`` from a test). The picture is the same test
    pattern as :mod:`tests.support.media` (frame number + keyframe flag readable after
    decoding), at ``bitrate`` bits per second, IDR every ``gop`` frames, paced in real time
    once the muxer is connected (the WHIP exchange itself takes about a second). Raises
    ``RuntimeError`` with FFmpeg's log if the muxer fails (e.g. the POST was refused, ICE/DTLS
    timed out after 5 s, or the server closed the connection).

    The muxer never answers STUN consent checks once connected, so a server using aioice's
    default consent freshness drops it after about 30 s: keep ``seconds`` below that unless
    the server accounts for it.
    """
    if timeout is None:
        timeout = seconds + 30.0
    with tempfile.TemporaryDirectory(prefix="whip-cert-") as cert_dir:
        command, env = _command(
            whip_url, token, seconds, width, height, fps, gop, bitrate, Path(cert_dir)
        )
        proc = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"FFmpeg WHIP publisher exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["frames"])


async def start_ffmpeg_publisher(
    whip_url: str,
    token: str,
    seconds: float,
    cert_dir: Path,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    *,
    gop: int = 30,
    bitrate: int = 600_000,
) -> asyncio.subprocess.Process:
    """As :func:`publish_with_ffmpeg`, without waiting: the publisher's process, which the
    caller ends (``terminate``) when the test no longer needs the teacher."""
    command, env = _command(whip_url, token, seconds, width, height, fps, gop, bitrate, cert_dir)
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def _command(
    whip_url: str,
    token: str,
    seconds: float,
    width: int,
    height: int,
    fps: int,
    gop: int,
    bitrate: int,
    cert_dir: Path,
) -> tuple[list[str], dict[str, str]]:
    args = {
        "whip_url": whip_url,
        "token": token,
        "seconds": seconds,
        "width": width,
        "height": height,
        "fps": fps,
        "gop": gop,
        "cert_dir": str(cert_dir),
        "bitrate": bitrate,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "tests.support.ffmpeg_whip", json.dumps(args)], env


def _main() -> None:
    parser = argparse.ArgumentParser(description="child process of publish_with_ffmpeg")
    parser.add_argument("args", help="JSON object with the publish parameters")
    args = json.loads(parser.parse_args().args)
    # FFmpeg's own stderr logger needs no GIL and shows up in the caller's error message.
    av.logging.restore_default_callback()
    level = av.logging.VERBOSE if os.environ.get("WHIP_VERBOSE") else av.logging.INFO
    av.logging.set_libav_level(level)
    frames = _publish_here(
        args["whip_url"],
        args["token"],
        args["seconds"],
        args["width"],
        args["height"],
        args["fps"],
        args["gop"],
        Path(args["cert_dir"]),
        args.get("bitrate", 600_000),
    )
    print(json.dumps({"frames": frames}), flush=True)


if __name__ == "__main__":
    _main()
