"""A corpus of messages written by this project, and the readings they must land with.

Each :class:`Case` is raw RFC 822 bytes plus what a correct normalization
finds. By default that is :func:`standard_reading`: how Python's ``email``
package (``email.policy.default``) reads the message. Where jobsys
deliberately reads more than that package — undeclared Windows-1252 headers,
mailboxes it salvages, header blocks it repairs, encoded words in unknown or
wrong charsets — the case says so in ``better`` (the fields and the values jobsys
must land instead) and ``why``; the README documents each kind. The corpus test
also checks that every ``better`` value really differs from the standard
reading, so no override can hide a regression.

Categories follow issue 13: encoded words, charsets, 8-bit headers,
format=flowed, message/rfc822, multipart/related, TNEF, calendar invitations,
long headers, mailing lists, the malformed cases of items 1-9, and messages
written by ``email.generator``.
"""

from __future__ import annotations

from tests.support.corpus import bodies, headers, malformed
from tests.support.corpus.case import ARRIVED, Case, Reading, standard_reading

__all__ = ["ARRIVED", "CASES", "Case", "Reading", "standard_reading"]

CASES: tuple[Case, ...] = (*headers.CASES, *bodies.CASES, *malformed.CASES)
