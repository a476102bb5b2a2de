"""JSON text that PostgreSQL's ``jsonb`` accepts, or an error that says why not.

``json.dumps`` writes NaN and Infinity (not JSON, and refused by ``jsonb``)
and ``\\u0000`` (valid JSON, refused by ``jsonb``), and raises a bare
``TypeError`` for an object it cannot encode. Caught only by the database,
each would surface as a driver error after the attempt ran; checked here,
the caller is told which rule the value broke.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jobsys.errors import UnstorableError

RESULT = "the job's result"  # how errors name a result (``dumps(..., what=RESULT)``)
# An escaped NUL: "\u0000" not itself preceded by an escaped backslash.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def dumps(value: Any, *, what: str) -> str:
    """``value`` as JSON text for a ``jsonb`` column.

    Raises:
        UnstorableError: ``value`` holds NaN or Infinity, a ``\\u0000`` character,
            or an object JSON cannot encode; ``what`` names the value in the message.
    """
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        raise UnstorableError(what, "it holds NaN or Infinity, which JSON cannot hold") from None
    except TypeError as e:
        raise UnstorableError(what, f"it holds a value JSON cannot encode ({e})") from None
    except RecursionError:
        raise UnstorableError(what, "it is nested too deeply (or refers to itself)") from None
    if _NUL.search(text):
        raise UnstorableError(what, "it holds a \\u0000 character, which jsonb cannot hold")
    return text


def without_nul(text: str) -> str:
    """``text`` with each NUL character replaced by U+FFFD (PostgreSQL text refuses NUL)."""
    return text.replace("\x00", "\ufffd")
