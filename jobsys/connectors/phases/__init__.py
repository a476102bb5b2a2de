"""The pipeline phases after ingestion, as pure functions over frozen dataclasses.

* :mod:`.normalize` — raw RFC 822 bytes → :class:`NormalizedMessage`
  (with :mod:`.mime` helpers); :mod:`.events` — Calendar resources →
  :class:`NormalizedEvent`.
* :mod:`.extract` — contacts and interactions from normalized data.
* :mod:`.process` — relationship scores, ranks and the per-user digest.

No database, network or Celery here: engine handlers call these functions and
store the results with idempotent upserts keyed by the natural keys documented
on each dataclass.
"""

from __future__ import annotations
