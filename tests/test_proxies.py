"""Forwarded headers are believed from the proxies TRUSTED_PROXIES names, and from no one else."""

import pytest
from flask import request

from project import create_app
from project.config import ConfigError

FORWARDED = {
    "X-Forwarded-For": "198.51.100.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "api.example.com",
}


def peer_as_seen(monkeypatch: pytest.MonkeyPatch, trusted: str | None, peer: str) -> dict:
    """What the app sees of a request with forwarded headers, sent from `peer`."""
    if trusted is None:
        monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    else:
        monkeypatch.setenv("TRUSTED_PROXIES", trusted)
    app = create_app("testing")
    app.add_url_rule(
        "/seen",
        "seen",
        lambda: {"addr": request.remote_addr, "scheme": request.scheme, "host": request.host},
    )
    response = app.test_client().get("/seen", headers=FORWARDED, environ_base={"REMOTE_ADDR": peer})
    return response.get_json()


def test_forwarded_headers_are_ignored_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = peer_as_seen(monkeypatch, None, "10.0.0.5")
    assert seen == {"addr": "10.0.0.5", "scheme": "http", "host": "localhost"}


@pytest.mark.parametrize(
    "trusted", ["10.0.0.5", "10.0.0.0/8", "192.0.2.1, 10.0.0.0/8", "::1, 10.0.0.5"]
)
def test_a_trusted_proxy_gives_the_client_address_scheme_and_host(
    monkeypatch: pytest.MonkeyPatch, trusted: str
) -> None:
    seen = peer_as_seen(monkeypatch, trusted, "10.0.0.5")
    assert seen == {"addr": "198.51.100.7", "scheme": "https", "host": "api.example.com"}


@pytest.mark.parametrize("peer", ["192.168.1.20", "::1", "not-an-address"])
def test_anyone_else_cannot_claim_another_address(
    monkeypatch: pytest.MonkeyPatch, peer: str
) -> None:
    seen = peer_as_seen(monkeypatch, "10.0.0.0/8", peer)
    assert seen["addr"] == peer and seen["scheme"] == "http" and seen["host"] == "localhost"


def test_a_bad_entry_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(
        ConfigError,
        match="TRUSTED_PROXIES must list IP addresses or networks, got 'proxy.internal'",
    ):
        create_app("testing")
