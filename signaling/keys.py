"""The services the HTTP handlers use, as typed aiohttp application keys."""

from __future__ import annotations

from aiohttp import web

from media.sfu import Sfu

from .classrooms import Classrooms
from .contracts import Accounts, AuditLog, Authority, LessonJournal, LessonStore
from .lesson_events import LessonEvents
from .sessions import Sessions

STORE = web.AppKey("store", LessonStore)
AUTHORITY = web.AppKey("authority", Authority)
ACCOUNTS = web.AppKey("accounts", Accounts)
AUDIT = web.AppKey("audit", AuditLog)
SFU = web.AppKey("sfu", Sfu)
SESSIONS = web.AppKey("sessions", Sessions)
EVENTS = web.AppKey("events", LessonEvents)
CLASSROOMS = web.AppKey("classrooms", Classrooms)
JOURNAL = web.AppKey("journal", LessonJournal)
