"""Recording of lessons: capture of the origin's producers into crash-safe packet logs
(track_sink, log_writer, lesson_capture), remuxing them into playable files without
transcoding (finalize, run as a child process: timeline, media.depacketizer, remux, thumbnail), and
the service that ties it to the lessons' life (recorder, catalog, layout)."""
