"""Google Gmail and Calendar: API clients, error classification and the emulator."""

from __future__ import annotations
