"""``orchestrion keys``: create, list and revoke API keys.

With no server running the commands open the database directly. While ``orchestrion serve``
holds it, they go through its API (``/v1/keys``), with an admin key from ``--admin-key`` or
``ORCHESTRION_API_KEY`` (none is needed while no key exists yet).
"""

from __future__ import annotations

from typing import Any

import typer

from orchestrion.cli.context import open_store, settings
from orchestrion.errors import NotFoundError, RetryableError, UsageError

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

ADMIN_KEY = typer.Option(
    None, "--admin-key", envvar="ORCHESTRION_API_KEY",
    help="Admin key for a running server (not needed without a server or before the first key).",
)


def _server_url() -> str | None:
    from orchestrion.store import running_server

    holder = running_server(settings().database_path)
    return None if holder is None else holder.url


def _call(url: str, method: str, path: str, admin_key: str | None, body: Any = None,
          timeout: float | None = 30) -> Any:
    """Ask the running server; ``timeout`` None waits for work that takes as long as it takes."""
    import httpx

    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    try:
        response = httpx.request(method, url + path, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RetryableError(f"cannot reach the server at {url} ({exc}); is it still running?") from exc
    try:
        answer = response.json()
    except ValueError:  # not JSON: a proxy's page, or a server error's plain text
        answer = None
    detail = answer.get("detail", response.text) if isinstance(answer, dict) else response.text.strip()[:500]
    if response.status_code == 404:
        raise NotFoundError(detail)
    if response.status_code >= 500:
        raise RetryableError(
            f"the server at {url} answered {response.status_code} ({detail or 'no details'}); its log says why. "
            "Try again in a moment"
        )
    if response.status_code in (401, 403):
        raise UsageError(
            f"the server at {url} answered {response.status_code}: {detail}. Keys are managed with an admin key: "
            "set ORCHESTRION_API_KEY to one; with no admin key yet, stop the server and run "
            "`orchestrion keys create --role admin` (it opens the database directly)"
        )
    if response.status_code >= 400:
        raise UsageError(f"the server at {url} answered {response.status_code}: {detail}")
    if answer is None:
        raise RetryableError(f"the server at {url} answered {response.status_code} without JSON; is it orchestrion?")
    return answer


@app.command()
def create(
    role: str = typer.Option("write", help="write (send events), admin (also keys and stats) or user."),
    user_id: str = typer.Option(None, help="For role user: whose data the key may read."),
    source: str | None = typer.Option(None, help="The source (app, shop) sending with this key, e.g. shop."),
    domain: str | None = typer.Option(None, help="Domain of the source's events that carry none, e.g. retail."),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Create a key. Its secret is printed once, as the last line; only its hash is stored."""
    url = _server_url()
    if url is not None:
        new = _call(url, "POST", "/v1/keys", admin_key,
                    {"role": role, "user_id": user_id, "source": source, "domain": domain})
        key_id, key, created = new["key_id"], new["key"], new["created_at"]
    else:
        from orchestrion.access.keys import create_key

        with open_store() as store:
            made = create_key(store.con, role, user_id=user_id, source=source, domain=domain)
        key_id, key, created = made.info.key_id, made.key, made.info.created_at.isoformat()
    typer.echo(f"key_id   {key_id}\nrole     {role}\ncreated  {created}")
    if source or domain:
        typer.echo(f"source   {source or '-'}\ndomain   {domain or '-'}")
    typer.echo("the key (shown only now; store it safely):", err=True)
    typer.echo(key)


@app.command("list")
def list_(admin_key: str = ADMIN_KEY) -> None:
    """List keys (ids, roles, dates); secrets are never shown again."""
    url = _server_url()
    if url is not None:
        rows = _call(url, "GET", "/v1/keys", admin_key)
    else:
        from orchestrion.access.keys import list_keys

        with open_store(read_only=True) as store:
            rows = [
                {"key_id": k.key_id, "role": k.role, "user_id": k.user_id,
                 "created_at": k.created_at.isoformat(),
                 "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                 "source": k.source, "domain": k.domain}
                for k in list_keys(store.con)
            ]
    for row in rows:
        status = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        owner = f" user={row['user_id']}" if row["user_id"] else ""
        owner += f" source={row['source']}" if row.get("source") else ""
        owner += f" domain={row['domain']}" if row.get("domain") else ""
        typer.echo(f"{row['key_id']}  {row['role']:<6} created {row['created_at']}  {status}{owner}")


@app.command()
def update(
    key_id: str = typer.Argument(..., help="The key_id shown by `keys list`."),
    source: str = typer.Option(None, help='The key\'s source, e.g. shop ("" clears it; omitted: kept).'),
    domain: str = typer.Option(None, help='Its events\' domain, e.g. retail ("" clears it; omitted: kept).'),
    admin_key: str = ADMIN_KEY,
) -> None:
    """Change a key's source and/or domain; events sent from then on take them."""
    changes = {name: value for name, value in (("source", source), ("domain", domain)) if value is not None}
    url = _server_url()
    if url is not None:
        row = _call(url, "PATCH", f"/v1/keys/{key_id}", admin_key, changes)
    else:
        from orchestrion.access.keys import set_source

        with open_store() as store:
            updated = set_source(store.con, key_id, changes)
        row = {"source": updated.source, "domain": updated.domain}
    typer.echo(f"{key_id}  source={row['source'] or '-'} domain={row['domain'] or '-'}")


@app.command()
def revoke(key_id: str = typer.Argument(..., help="The key_id shown by `keys list`."),
           admin_key: str = ADMIN_KEY) -> None:
    """Revoke a key; a running server stops accepting it at once."""
    url = _server_url()
    if url is not None:
        _call(url, "DELETE", f"/v1/keys/{key_id}", admin_key)
    else:
        from orchestrion.access.keys import revoke_key

        with open_store() as store:
            revoke_key(store.con, key_id)
    typer.echo(f"revoked {key_id}")
