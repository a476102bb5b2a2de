"""Interfaces: CLI, HTTP API, observability setup. No business logic lives here."""

from __future__ import annotations
