"""Unexpected errors answer problem+json without a stack trace, and are logged."""

import logging

import pytest

from project import create_app


def test_unexpected_error_returns_500_problem_without_traceback(
    migrated: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app("testing")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret internal detail" not in text
    assert "secret internal detail" in caplog.text  # the operator still sees it
