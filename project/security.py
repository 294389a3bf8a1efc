"""Security headers on every response, and no cookie sessions."""

from typing import Any

from flask import Flask, Request, Response
from flask.sessions import NullSession, SessionInterface

# Scripts and styles only from this origin, no inline scripts: the page and /docs load
# everything from files this app serves.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


_HEADER_ITEMS = [(name.lower(), (name, value)) for name, value in SECURITY_HEADERS.items()]


class SecurityHeaders:
    """WSGI middleware: add the security headers a response does not set itself.

    At the WSGI layer they are one list extension per response; as an after-request hook
    each went through werkzeug's header validation again (a tenth of /healthz, profiled).
    """

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def start_with_headers(status: str, headers: list, exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            headers.extend(item for key, item in _HEADER_ITEMS if key not in present)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_headers)


class NoSessions(SessionInterface):
    """No cookie sessions: the API and the page keep no state in cookies.

    Flask's default signs and reads a session cookie on every request once SECRET_KEY is
    set (a sixth of /healthz's CPU, profiled). Reading `session` gives an empty one.
    """

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


def init_security_headers(app: Flask) -> None:
    """Send the security headers on every response; keep no cookie sessions."""
    app.wsgi_app = SecurityHeaders(app.wsgi_app)
    app.session_interface = NoSessions()
