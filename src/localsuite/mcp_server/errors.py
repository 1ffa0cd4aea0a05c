"""Tool errors: what a failed tool call tells the client, and the metrics.

    ToolError (mcp SDK)          the client gets a result with is_error=True and the message
    └── ToolFailure              outcome (metrics label)
        ├── InvalidInput         invalid_input   the arguments cannot work; nothing was called
        ├── Unavailable          unavailable     a dependency did not answer, or answered 503
        ├── Rejected             rejected        a dependency refused the request (4xx)
        ├── TimedOut             timeout         no answer within the call's deadline, or 504
        └── DependencyFailed     failed          a dependency answered garbage, or another 5xx

Every message names the dependency and says what to do. Arguments that do not fit a
tool's input schema never reach it: the SDK refuses them, counted as `invalid_input` too.
"""

from __future__ import annotations

from typing import ClassVar

from mcp.server.mcpserver.exceptions import ToolError


class ToolFailure(ToolError):
    outcome: ClassVar[str] = "failed"


class InvalidInput(ToolFailure):
    outcome = "invalid_input"


class Unavailable(ToolFailure):
    outcome = "unavailable"


class Rejected(ToolFailure):
    outcome = "rejected"


class TimedOut(ToolFailure):
    outcome = "timeout"


class DependencyFailed(ToolFailure):
    outcome = "failed"
