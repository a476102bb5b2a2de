"""The contract every :class:`~jobsys.store.protocol.JobStore` keeps, run against each store.

As huey's ``StorageTests``: a subclass provides a ``store`` fixture (an empty
store) and :meth:`StoreContract.audit_log`, and inherits every test. The
tests never move a clock, so the same ones run on PostgreSQL: what should be
"expired" is made so with a negative lease, ``lost_after=-1``,
``dead_after=-1`` or ``older_than=-1``.

PostgreSQL's gateway is the reference: where the in-memory store differs,
the in-memory store is wrong.
"""

from __future__ import annotations

from tests.contract.admission import AdmissionContract
from tests.contract.canvas import CanvasContract
from tests.contract.coalesce import CoalesceContract
from tests.contract.fleet import FleetContract
from tests.contract.jobs import JobsContract
from tests.contract.keys import KeysContract
from tests.contract.quotas import QuotaContract
from tests.contract.running import MOVE_DRIVERS, RunningContract
from tests.contract.tracing import TracingContract

__all__ = ["MOVE_DRIVERS", "StoreContract"]


class StoreContract(
    JobsContract,
    RunningContract,
    FleetContract,
    AdmissionContract,
    QuotaContract,
    KeysContract,
    CanvasContract,
    CoalesceContract,
    TracingContract,
):
    """Every test of the store protocol; a subclass gives the ``store`` fixture and the audit log.

    ``audit_log(store)`` returns every audit event so far, oldest first, as dicts of
    actor, action, job_id, user_id and detail.
    """
