"""aiortc's receive-side bitrate estimator, which the SFU never feeds, taken off its receivers.

Every video receiver aiortc makes carries a ``RemoteBitrateEstimator`` whose rate counter is a
thousand small bucket objects. The SFU never feeds it: a producer's packets go through
rtp_reader's handler, and each classroom's estimate comes from that classroom's own feedback.
Left in place, it is over a third of what a peer connection allocates before ICE connects
(300 half-open classrooms: 25 of 67 MiB), and a burst of them spreads over that many more of
Python's allocator arenas, which are given back only once every object in them is gone.
aiortc already allows ``None`` there (its audio receivers have none).

Private: ``RTCRtpReceiver.__remote_bitrate_estimator``."""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection


def drop_bitrate_estimators(pc: RTCPeerConnection) -> None:
    """Take the unused bitrate estimator off every receiver ``pc`` has now."""
    for transceiver in pc.getTransceivers():
        receiver: Any = transceiver.receiver  # the attribute is private: mypy does not know it
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None
