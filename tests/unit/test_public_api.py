from __future__ import annotations

import jobsys


def test_public_names_are_pinned() -> None:
    # Given the package's promise to its users
    # Then exactly these names are public
    assert sorted(jobsys.__all__) == [
        "ConfigError",
        "DuplicateJobError",
        "InvalidTransitionError",
        "JobCancelled",
        "JobContext",
        "JobError",
        "JobNotFoundError",
        "JobPostponed",
        "JobTask",
        "JobsysError",
        "PayloadError",
        "Status",
        "StoreUnavailableError",
        "UnknownKindError",
        "app",
        "enqueue",
        "enqueue_many",
        "job",
    ]


def test_celery_finds_the_app() -> None:
    # `celery -A jobsys` looks up jobsys.app
    assert jobsys.app.main == "jobsys"
