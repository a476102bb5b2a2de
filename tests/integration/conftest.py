"""Integration tests run the job kinds of ``tests.support.kinds`` in real workers."""

from __future__ import annotations

import tests.support.kinds  # noqa: F401  (registers the kinds in this process too)
from tests.integration.api_support import api  # noqa: F401  (the HTTP API on a test's servers)
