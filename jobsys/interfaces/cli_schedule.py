"""``jobsys schedule``: periodic syncs, by hand."""

from __future__ import annotations

import click

from jobsys.interfaces.clictx import runtime_of


@click.group()
def schedule() -> None:
    """Periodic syncs (one beat entry ticks; see JOBSYS_SYNC_INTERVAL)."""


@schedule.command("tick")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output, with each job")
def schedule_tick(as_json: bool) -> None:
    """Enqueue a sync for every due user now, as the beat's tick does."""
    from jobsys.interfaces import render
    from jobsys.pipeline.schedule import tick

    done = tick(runtime_of())
    if as_json:
        render.emit_json(done.as_dict())
        return
    click.echo(
        f"{_count(done.due, 'user')} due: {_count(len(done.enqueued), 'sync')} enqueued,"
        f" {len(done.coalesced)} joined a sync still queued or running"
        f" ({_count(done.batches, 'batch', 'batches')}, {done.seconds:.2f} s)"
    )


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"
