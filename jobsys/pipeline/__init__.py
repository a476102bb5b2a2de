"""The Gmail and Calendar sync pipeline: ingestion -> normalization -> extraction -> processing."""

from __future__ import annotations
