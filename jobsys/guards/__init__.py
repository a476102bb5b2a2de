"""Guards around outside calls: rate limits in quota units (breakers and adaptive batching to come).

Guards know nothing of jobs: they take keys, costs and clocks.
"""

from __future__ import annotations
