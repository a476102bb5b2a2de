"""The pipeline phases after ingestion, as pure functions over frozen dataclasses.

* :mod:`.normalize` — raw RFC 822 bytes → :class:`NormalizedMessage`, read as
  Python's ``email`` package reads them: :mod:`.headers` (parse, repair,
  unfold, decode), :mod:`.addresses` (mailboxes), :mod:`.body` (the text
  body), :mod:`.invites` (``text/calendar`` parts), :mod:`.mime` (charsets,
  encoded words, HTML); :mod:`.events` — Calendar resources →
  :class:`NormalizedEvent`.
* :mod:`.extract` — contacts and interactions from normalized data.
* :mod:`.process` — relationship scores, ranks and the per-user digest.

No database, network or Celery here: engine handlers call these functions and
store the results with idempotent upserts keyed by the natural keys documented
on each dataclass.
"""

from __future__ import annotations
