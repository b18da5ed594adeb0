"""The services the HTTP handlers use, as typed aiohttp application keys."""

from __future__ import annotations

from aiohttp import web

from media.sfu import Sfu

from .contracts import Authority, LessonStore
from .lesson_events import LessonEvents
from .sessions import Sessions

STORE = web.AppKey("store", LessonStore)
AUTHORITY = web.AppKey("authority", Authority)
SFU = web.AppKey("sfu", Sfu)
SESSIONS = web.AppKey("sessions", Sessions)
EVENTS = web.AppKey("events", LessonEvents)
