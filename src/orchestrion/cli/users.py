"""``orchestrion users``: what a person needs to reach their own page."""

from __future__ import annotations

import typer

from orchestrion.cli.context import open_store, settings
from orchestrion.cli.keys import ADMIN_KEY
from orchestrion.errors import DatabaseLockedError, NotFoundError

__all__ = ["app"]

app = typer.Typer(help="Sign-in links for people.", no_args_is_help=True)


@app.command()
def link(
    user: str = typer.Argument(..., help="The user_id the link signs in (as in the events)."),
    base_url: str = typer.Option(
        None, help="Where people reach the server; default ORCHESTRION_PUBLIC_URL, else the server's URL."
    ),
) -> None:
    """Print a sign-in link for USER's web page: it signs in once, within ORCHESTRION_WEB_LINK_DAYS days.

    The token is after '#', so it never reaches a server log. The link's id (printed to stderr)
    revokes it: DELETE /v1/signin-links/{id} with an admin key.

    Refuses a user the store has never seen (checked when no server holds the store).
    """
    from orchestrion.store import running_server
    from orchestrion.web.session import Signer

    config = settings()
    holder = running_server(config.database_path)
    if holder is None:
        from orchestrion.ingest.users import known_user

        try:
            with open_store(config, read_only=True) as store:
                known = known_user(store.con, user)
        except DatabaseLockedError:
            known = True  # held by a process that announces no API: the link is signed without the check
        if not known:
            raise NotFoundError(f"no user {user!r} in the store (no events, no identify); check the user_id")
    if base_url is None:
        base_url = config.public_url or (holder.url if holder else config.web_url)
    token, link_id = Signer.from_settings(config).link_token(user)
    typer.echo(f"link id {link_id} (revoke it with DELETE /v1/signin-links/{link_id})", err=True)
    typer.echo(f"{base_url.rstrip('/')}/signin#token={token}")


@app.command()
def token(
    user: str = typer.Argument(..., help="The user_id the token reads (as in the events)."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Create an API key that reads only USER's feed and deliverables (the secret is printed once, last).

    Goes through the running server when there is one, like `orchestrion keys create --role user`.
    """
    from orchestrion.cli.keys import create

    create(role="user", user_id=user, source=None, domain=None, admin_key=admin_key)
