"""Fork safety: a forked process must not share its parent's database sockets."""

from flask import Flask

from project.database import all_engines


def forget_inherited_connections(app: Flask) -> None:
    """Drop, without closing, the pooled connections this process inherited through fork."""
    with app.app_context():
        for engine in all_engines(app):
            # close=False: the parent still owns those sockets; closing them here would
            # break its connections. SQLAlchemy's documented recipe for forked children.
            engine.dispose(close=False)
