"""Whether a message is about code: the rule that picks the code alias for `auto`.

Used by rag (which alias answers a question) and the MCP server's `chat(model="auto")`,
so both route the same message the same way. A heuristic by design: cheap, explainable,
and wrong only towards the other backend, which can answer too.
"""

from __future__ import annotations

import re

_CODE_SIGNS = re.compile(
    r"```|`[^`\n]+`"  # Markdown code
    r"|\b(def|class|import|return|function|const|let|var|public|static|void|struct|impl"
    r"|fn|func|lambda|async|await|#include|SELECT|INSERT|UPDATE|DELETE)\b.{0,40}[({:;=]"
    r"|[A-Za-z_][\w.]*\([^()\n]*\)"  # a call: name(args)
    r"|[{};]\s*$|=>|->|::|\+\+|&&|\|\||!=|==",
    re.MULTILINE,
)
_CODE_WORDS = re.compile(
    r"\b(code|coding|program|programming|script|function|method|compile[rsd]?|compiling"
    r"|debug(ging)?|bug|stack ?trace|traceback|exception|regex|regexp|sql|api|json|yaml"
    r"|python|javascript|typescript|java|rust|golang|c\+\+|c#|kotlin|swift|bash|shell"
    r"|refactor|unit tests?|git)\b"
    r"|코드|함수|프로그램|컴파일|디버그|버그|스크립트|파이썬|자바스크립트|정규식|예외",
    re.IGNORECASE,
)


def looks_like_code(text: str) -> bool:
    """True when `text` holds code or asks about programming."""
    return bool(_CODE_SIGNS.search(text) or _CODE_WORDS.search(text))
