"""The application class decides once per function whether to run it async, as Flask would."""

from dataclasses import dataclass

import pytest
from apiflask import APIFlask

from project.application import Application


@dataclass
class UnhashableHook:
    """A callable dataclass: `eq` without `frozen` leaves it no `__hash__`, so no cache key."""

    def __call__(self) -> None:
        """Do nothing, as a hook may."""


def sync_view() -> str:
    return "ok"


async def async_view() -> str:
    return "ok"


def test_sync_functions_are_returned_as_they_are() -> None:
    app = Application(__name__)
    hook = UnhashableHook()
    with pytest.raises(TypeError):
        hash(hook)
    assert app.ensure_sync(sync_view) is sync_view
    assert app.ensure_sync(sync_view) is sync_view  # the second answer comes from the cache
    assert app.ensure_sync(hook) is hook


def test_async_functions_get_what_flask_gives_them() -> None:
    def answer(app: APIFlask) -> object:
        try:
            run = app.ensure_sync(async_view)
        except RuntimeError as error:  # Flask without its `async` extra refuses async views
            return str(error)
        return run()  # with it: the view's return value; unwrapped, a coroutine

    assert answer(Application(__name__)) == answer(APIFlask(__name__))
