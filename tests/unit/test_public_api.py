from __future__ import annotations

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
