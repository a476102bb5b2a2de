"""A loopback Gmail v1 + Calendar v3 emulator for tests, demos and benchmarks.

The real google-api-python-client talks to it when built with
``client_options={"api_endpoint": emulator.base_url}``. Data is generated
deterministically from a seed and dated relative to an anchor (by default the
start of the current UTC day, see :class:`EmulatorConfig`); quotas, faults and cursor expiry are
controllable through the :class:`Emulator` object or the admin HTTP API
under ``/_emulator/`` (see :mod:`.admin`).
"""

from __future__ import annotations

from jobsys.connectors.google.emulator.faults import FaultSettings
from jobsys.connectors.google.emulator.runner import (
    CLIENT_ID,
    CLIENT_SECRET,
    Emulator,
    running,
    serve,
)
from jobsys.connectors.google.emulator.settings import EmulatorConfig
from jobsys.connectors.google.emulator.truth import TruthAttendee, TruthEvent, TruthMessage
from jobsys.connectors.google.emulator.world import UserCredentials

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "Emulator",
    "EmulatorConfig",
    "FaultSettings",
    "TruthAttendee",
    "TruthEvent",
    "TruthMessage",
    "UserCredentials",
    "running",
    "serve",
]
