from __future__ import annotations

import subprocess
import sys

import jobsys


def test_public_names_are_pinned() -> None:
    # Given the package's promise to its users
    # Then exactly these names are public
    assert sorted(jobsys.__all__) == [
        "Attempt",
        "ConfigError",
        "DuplicateJobError",
        "Hook",
        "InvalidTransitionError",
        "Job",
        "JobCancelled",
        "JobContext",
        "JobDeadError",
        "JobError",
        "JobNotFoundError",
        "JobPostponed",
        "JobResult",
        "JobTask",
        "JobsysError",
        "OptionError",
        "Outcome",
        "PayloadError",
        "QuotaExceeded",
        "Recorded",
        "Runtime",
        "Status",
        "StoreUnavailableError",
        "UnknownKindError",
        "app",
        "enqueue",
        "enqueue_many",
        "get_job",
        "job",
    ]


def test_celery_finds_the_app() -> None:
    # `celery -A jobsys` looks up jobsys.app
    assert jobsys.app.main == "jobsys"


def test_importing_jobsys_loads_the_engine_only() -> None:
    # When a fresh interpreter imports jobsys
    code = (
        "import jobsys, sys; print('googleapiclient' in sys.modules, 'jobsys.tasks' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    # Then neither the Google client nor the sync pipeline came with it
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
