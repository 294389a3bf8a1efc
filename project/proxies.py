"""X-Forwarded-For, -Proto and -Host, believed only from the proxies TRUSTED_PROXIES names."""

import ipaddress
from collections.abc import Iterable
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from project.config import IPNetwork


class TrustedProxyFix:
    """Werkzeug's ProxyFix for requests that come from a trusted proxy; others as they came.

    ProxyFix alone believes the last hop of the headers from any client, so anyone who can
    reach the app directly could claim another address (and another client's rate limit).
    """

    def __init__(self, wsgi_app: Any, proxies: Iterable[IPNetwork]) -> None:
        self.wsgi_app = wsgi_app
        self.fixed = ProxyFix(wsgi_app, x_for=1, x_proto=1, x_host=1)
        self.proxies = list(proxies)

    def from_trusted_proxy(self, address: str | None) -> bool:
        """Say whether the peer address is one of the trusted proxies."""
        try:
            peer = ipaddress.ip_address(address or "")
        except ValueError:  # no address, or not an IP (a Unix socket's peer)
            return False
        return any(peer in network for network in self.proxies)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.from_trusted_proxy(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.wsgi_app(environ, start_response)


def init_trusted_proxies(app: Flask) -> None:
    """Believe forwarded headers from the proxies TRUSTED_PROXIES names (none by default)."""
    if app.config["TRUSTED_PROXIES"]:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, app.config["TRUSTED_PROXIES"])
