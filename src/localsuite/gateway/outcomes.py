"""What one attempt at a deployment came to, and whose failure it was.

    outcome          whose      breaker        next
    ok               -          success        answer the client
    client_error     nobody     success        straight back (the request's own error)
    context_length   nobody     success        the next deployment, never the same again
    unsuitable       nobody     success        the next: this one refused what only it
                                               cannot take (a continuation's prefill)
    rate_limited     deployment failure         the same once more if its Retry-After fits,
                                               else the next
    http_error       deployment failure         the same once more (a retryable status),
                                               else the next
    unreachable      server     -              the next; the server's other deployments are
                                               skipped, and its probe decides about the server
    no_answer        deployment failure         the next (timeout, silence, reset)
    cut              deployment failure         the next; a stream is continued there
    garbage          deployment failure         the next (a 2xx that breaks the protocol)
    stream_error     deployment failure         the next (an error event inside a stream)
    deadline         nobody     released       stop: the request's own time ran out
    cancelled        nobody     released       stop: the client went away

`unreachable`, `no_answer`, `cut` and `garbage` also nudge the server's probe, so that a
dead server is seen by everyone within one probe round trip.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    OK = "ok"
    CLIENT_ERROR = "client_error"
    CONTEXT_LENGTH = "context_length"
    UNSUITABLE = "unsuitable"
    RATE_LIMITED = "rate_limited"
    HTTP_ERROR = "http_error"
    UNREACHABLE = "unreachable"
    NO_ANSWER = "no_answer"
    CUT = "cut"
    GARBAGE = "garbage"
    STREAM_ERROR = "stream_error"
    DEADLINE = "deadline"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """The request is decided: no other deployment is tried."""
        return self in _FINAL

    @property
    def deployment_failure(self) -> bool:
        return self in _DEPLOYMENT_FAILURES

    @property
    def answered(self) -> bool:
        """The deployment answered sanely, whatever it said of the request."""
        return self in _ANSWERED

    @property
    def retryable(self) -> bool:
        """Worth one more try on the same deployment."""
        return self in (Outcome.RATE_LIMITED, Outcome.HTTP_ERROR)

    @property
    def suspicious(self) -> bool:
        """Says something may be wrong with the whole server: probe it now."""
        return self in (Outcome.UNREACHABLE, Outcome.NO_ANSWER, Outcome.CUT, Outcome.GARBAGE)


_ANSWERED = frozenset(
    {Outcome.OK, Outcome.CLIENT_ERROR, Outcome.CONTEXT_LENGTH, Outcome.UNSUITABLE}
)
_FINAL = frozenset({Outcome.OK, Outcome.CLIENT_ERROR, Outcome.DEADLINE, Outcome.CANCELLED})
_DEPLOYMENT_FAILURES = frozenset(
    {
        Outcome.RATE_LIMITED,
        Outcome.HTTP_ERROR,
        Outcome.NO_ANSWER,
        Outcome.CUT,
        Outcome.GARBAGE,
        Outcome.STREAM_ERROR,
    }
)


class BadStream(Exception):
    """A stream that broke the protocol it promised: garbage, or an error event in it."""

    def __init__(self, detail: str, outcome: Outcome = Outcome.GARBAGE) -> None:
        super().__init__(detail)
        self.outcome = outcome
