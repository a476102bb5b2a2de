"""A job kind that logs every way a handler can, for the log tests.

Workers import it through ``JOBSYS_IMPORTS`` (added to the usual test kinds).
"""

from __future__ import annotations

import logging

import structlog
from pydantic import BaseModel

from jobsys import JobContext, job


class Chat(BaseModel):
    run_id: str


@job(kind="test.chatty", payload=Chat)
def chatty(ctx: JobContext, payload: Chat) -> None:
    """Logs through its context, structlog, the standard library, and print()."""
    ctx.log.info("chatty.context", step=1)
    structlog.get_logger("chatty").warning("chatty.structlog", step=2)
    logging.getLogger("chatty.stdlib").warning("chatty stdlib %d", 3)
    print("chatty print 4")
