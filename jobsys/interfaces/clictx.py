"""What every ``jobsys`` command shares: its runtime, built from the environment once."""

from __future__ import annotations

from typing import Any

import click

from jobsys.engine import runtime
from jobsys.interfaces import tracing


def runtime_of() -> runtime.Runtime:
    """The command's runtime, built from the environment on first use (and installed)."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, runtime.Runtime):
        root.obj = runtime.Runtime.from_env()
        runtime.install(root.obj)
        tracing.install(root.obj)
    return root.obj


def users_of() -> Any:
    """The users' store, on the command's runtime."""
    from jobsys.store.users import UserStore

    return UserStore(runtime_of().postgres)
