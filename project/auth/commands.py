"""`flask tokens create NAME`, `flask tokens list` and `flask tokens revoke NAME`."""

from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from project.auth.tokens import TokenError, create_token, list_tokens, revoke_token

tokens_cli = AppGroup("tokens", help="Create, list and revoke the API's bearer tokens.")


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a refused command or an unreachable database into one line and exit status 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TokenError as error:
            raise click.ClickException(str(error)) from None
        except DBAPIError as error:
            reason = str(error.orig).strip().splitlines()[0]
            raise click.ClickException(
                f"the database cannot be used ({reason}); is it up and migrated "
                "(`flask db upgrade`)?"
            ) from None

    return wrapper


@tokens_cli.command("create")
@click.argument("name")
@one_line_errors
def create(name: str) -> None:
    """Create a token named NAME and print it (only this once)."""
    token = create_token(name)
    click.echo(token)
    # On stderr, so `TOKEN=$(flask tokens create ci)` captures the token alone.
    click.echo(
        f"Token {name!r} created; it is shown only now. "
        "Send it as `Authorization: Bearer <token>`.",
        err=True,
    )


@tokens_cli.command("list")
@one_line_errors
def list_command() -> None:
    """List the tokens: name, created, and revoked (the tokens themselves are not kept)."""
    tokens = list_tokens()
    if not tokens:
        click.echo("No tokens yet: create one with `flask tokens create NAME`.", err=True)
        return
    width = max(len(token.name) for token in tokens)
    for token in tokens:
        status = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
        click.echo(f"{token.name:<{width}}  created {token.created_at:%Y-%m-%d %H:%M}  {status}")


@tokens_cli.command("revoke")
@click.argument("name")
@one_line_errors
def revoke(name: str) -> None:
    """Revoke the token NAME: requests carrying it are refused from now on."""
    revoke_token(name)
    click.echo(f"Token {name!r} revoked.")
