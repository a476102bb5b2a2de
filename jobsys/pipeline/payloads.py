"""Payload schemas of the pipeline's job kinds."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field


class SyncRequest(BaseModel):
    full: bool = Field(False, description="ignore stored cursors and list everything")


class Step(BaseModel):
    run_id: uuid.UUID
    full: bool = False


class Batch(BaseModel):
    run_id: uuid.UUID
    message_ids: list[str] = Field(default_factory=list, max_length=1000)
    event_ids: list[str] = Field(default_factory=list, max_length=1000)
