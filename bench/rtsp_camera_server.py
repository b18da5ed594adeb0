"""The school-sources benchmark's network camera: GStreamer's RTSP server (gst-rtsp-server,
through PyGObject) on 127.0.0.1, playing a pre-encoded H.264 clip in a loop, live, with AAC
sound, and writing down when it produced each frame.

Run by bench/rtsp_camera.py with the system's Python (Debian's python3-gi), not the project's
virtual environment: ``rtsp_camera_server.py PORT PATH CLIP FPS STAMPS``. ``CLIP`` holds the
clip's access units (Annex B), each after its length (4 bytes, big-endian); every connection
plays it from its first frame, looping, at ``FPS``. For each frame handed to the pipeline one
line goes to ``STAMPS``: ``<frame number in the clip> <CLOCK_MONOTONIC seconds>``, taken just
before the frame enters the pipeline (the clip is encoded already: this is the moment a camera's
encoder would hand it on). Prints ``ready`` once it listens."""

import struct
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

AUDIO = (
    "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 ! audioconvert ! audioresample "
    "! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97"
)


def read_clip(path):
    frames = []
    with open(path, "rb") as clip:
        data = clip.read()
    pos = 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        frames.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return frames


def feed(appsrc, frames, fps, stamps):
    """Hands the clip to ``appsrc`` in real time once its pipeline plays, until the pipeline
    is torn down. A frame the pipeline refuses (flushing, while the RTSP server sets it up)
    is not written down."""
    deadline = time.monotonic() + 30
    while appsrc.current_state != Gst.State.PLAYING:
        if time.monotonic() > deadline:
            return
        time.sleep(0.005)
    start = time.monotonic()
    n = 0
    while True:
        delay = start + n / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if appsrc.current_state == Gst.State.NULL:
            return
        index = n % len(frames)
        produced = time.monotonic()
        result = appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(frames[index]))
        if result == Gst.FlowReturn.OK:
            stamps.write(f"{index} {produced:.6f}\n")
            stamps.flush()
        elif result != Gst.FlowReturn.FLUSHING:
            return
        n += 1


def main():
    port, path, clip_path, fps, stamps_path = sys.argv[1:6]
    frames = read_clip(clip_path)
    stamps = open(stamps_path, "a")  # noqa: SIM115 - for the life of the process
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=src is-live=true do-timestamp=true format=time stream-type=seekable "
        f'caps="video/x-h264,stream-format=byte-stream,alignment=au,framerate={fps}/1" '
        f"! h264parse ! rtph264pay name=pay0 pt=96 {AUDIO} )"
    )
    factory.set_shared(False)

    def configured(_factory, media):
        appsrc = media.get_element().get_by_name("src")
        pipeline = media.get_element().get_parent()
        if isinstance(pipeline, Gst.Pipeline):
            # the sinks would hold every packet for the sound branch's latency (its encoder's
            # frames): a camera sends a picture once it is encoded
            pipeline.set_latency(0)
            print(f"latency set {pipeline}", file=sys.stderr, flush=True)
        # the RTSP server seeks to the PLAY request's range: a live camera plays on
        appsrc.connect("seek-data", lambda _src, _offset: True)
        threading.Thread(target=feed, args=(appsrc, frames, int(fps), stamps), daemon=True).start()

    factory.connect("media-configure", configured)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
