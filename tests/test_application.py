"""The application class decides once per function whether to run it async, as Flask would."""

from dataclasses import dataclass

from apiflask import APIFlask

from project.application import Application


@dataclass
class UnhashableHook:
    """A callable with `__eq__` and so no `__hash__`: it cannot be a cache key."""

    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1


def sync_view() -> str:
    return "ok"


async def async_view() -> str:
    return "ok"


def test_sync_functions_are_returned_as_they_are() -> None:
    app = Application(__name__)
    hook = UnhashableHook()
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
