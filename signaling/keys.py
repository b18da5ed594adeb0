"""The services the HTTP handlers use, as typed aiohttp application keys."""

from __future__ import annotations

from aiohttp import web

from media.rtmp_server import RtmpServer

from .contracts import Accounts, AuditLog, Authority, CourseStore, LessonJournal, LessonStore
from .live_lessons import LiveLessons
from .turn_credentials import TurnCredentials

STORE = web.AppKey("store", LessonStore)
COURSES = web.AppKey("courses", CourseStore)
AUTHORITY = web.AppKey("authority", Authority)
ACCOUNTS = web.AppKey("accounts", Accounts)
AUDIT = web.AppKey("audit", AuditLog)
LESSONS = web.AppKey("live_lessons", LiveLessons)
JOURNAL = web.AppKey("journal", LessonJournal)
# set only where TURN servers are configured
TURN = web.AppKey("turn_credentials", TurnCredentials)
# set only where RTMP publishing is on (--rtmp-port)
RTMP = web.AppKey("rtmp_server", RtmpServer)
