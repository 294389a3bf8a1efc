"""Security headers on every response, pages and API, success and error."""

import pytest
from flask.testing import FlaskClient

from project.security import SECURITY_HEADERS


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/docs"),
        ("GET", "/users/"),
        ("GET", "/nowhere"),
        ("POST", "/tasks/divide"),
    ],
)
def test_every_response_carries_the_security_headers(
    client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_page_has_no_inline_script(client: FlaskClient) -> None:
    for path in ("/", "/docs"):
        html = client.get(path).get_data(as_text=True)
        assert html.count("<script") == html.count("<script src=")
