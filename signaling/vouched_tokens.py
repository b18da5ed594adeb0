"""Lesson tokens of other servers' lessons that their home server vouched for: an edge takes a
classroom's own join token, signed by the lesson's home, once the home said it is good (see
`signaling.cluster`). Wraps this server's own `Authority`: its tokens verify as before, and a
token it cannot verify is let in as the grant the home vouched for, until that grant expires.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from .contracts import Authority, CourseLink, Grant, Role, TokenError

MAX_VOUCHED = 10_000  # distinct tokens kept; the oldest give way (they are vouched again)


class VouchedTokens:
    def __init__(self, own: Authority, clock: Callable[[], float] = time.time) -> None:
        self._own = own
        self._clock = clock
        # by the token's SHA-256: the tokens themselves are not kept
        self._vouched: dict[bytes, Grant] = {}

    def vouch(self, token: str, grant: Grant) -> None:
        key = _key(token)
        self._vouched.pop(key, None)
        self._vouched[key] = grant
        while len(self._vouched) > MAX_VOUCHED:
            self._vouched.pop(next(iter(self._vouched)))

    def forget_lesson(self, lesson_id: str) -> None:
        for key in [k for k, grant in self._vouched.items() if grant.lesson_id == lesson_id]:
            del self._vouched[key]

    def verify(self, token: str) -> Grant:
        try:
            return self._own.verify(token)
        except TokenError:
            grant = self._vouched.get(_key(token)) if isinstance(token, str) else None
            if grant is None:
                raise
            if self._clock() >= grant.expires_at:
                del self._vouched[_key(token)]
                raise TokenError("token expired") from None
            return grant

    # everything this server issues, it issues itself

    def issue(
        self,
        lesson_id: str,
        role: Role,
        generation: int = 0,
        *,
        not_after: float | None = None,
        lasting_until: float | None = None,
    ) -> str:
        return self._own.issue(
            lesson_id, role, generation, not_after=not_after, lasting_until=lasting_until
        )

    def issue_for_link(self, lesson_id: str, generation: int, link: CourseLink) -> str:
        return self._own.issue_for_link(lesson_id, generation, link)

    def course_link(self, link: CourseLink) -> str:
        return self._own.course_link(link)

    def verify_course_link(self, token: str) -> CourseLink:
        return self._own.verify_course_link(token)


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
