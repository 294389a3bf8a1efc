"""The tasks API's payloads."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from project.schemas import FiniteNumber, PageQuery
from project.tasks.models import STATES

TaskState = Literal[STATES]  # type: ignore[valid-type]  # the record's states, one list

# Long enough to save most polls, short enough not to hold a gunicorn thread for long.
MAX_WAIT_SECONDS = 10.0


class DivideIn(BaseModel):
    """The operands of `divide(x, y)`; y = 0 is accepted and fails in the worker."""

    model_config = ConfigDict(extra="forbid")

    x: FiniteNumber
    y: FiniteNumber


class TaskError(BaseModel):
    """Why a task failed (never a traceback)."""

    type: str = Field(description="The exception's class, e.g. ZeroDivisionError.")
    message: str


class QueuedTask(BaseModel):
    """A task just queued."""

    id: str
    name: str
    state: str = Field(description="PENDING until a worker starts it.")
    url: str = Field(description="Where to follow the task.")


class TaskOut(QueuedTask):
    """A task: Celery's state, and its result or error once it has finished."""

    state: TaskState
    args: list[Any] = Field(description="The task's positional arguments.")
    created_at: datetime
    started_at: datetime | None = Field(None, description="When a worker last started it.")
    finished_at: datetime | None = None
    deliveries: int = Field(
        0, description="How many times a worker received it (retries and redeliveries count)."
    )
    queued_by: str | None = Field(
        None, description="The name of the API token that queued it; null without one."
    )
    result: Any = Field(None, description="The return value, on SUCCESS.")
    error: TaskError | None = Field(
        None, description="On FAILURE (and RETRY): what went wrong.", exclude_if=lambda v: v is None
    )


class TaskWaitQuery(BaseModel):
    """`wait`: how long to wait for the task to finish before answering."""

    wait: float = Field(
        0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="Seconds to wait for the task to finish before answering (long poll).",
    )


class TaskPageQuery(PageQuery):
    """Newest first: `limit` tasks queued before the task `after`, optionally filtered."""

    after: str | None = Field(None, description="The id of the last task of the previous page.")
    state: TaskState | None = Field(None, description="Only tasks whose record is in this state.")
    name: str | None = Field(
        None,
        max_length=255,
        description="Only tasks of this name, in full or a registered task's short name.",
    )


class TaskPage(BaseModel):
    """A page of tasks, newest first; `next` is the next page's URL, null on the last."""

    items: list[TaskOut]
    next: str | None
