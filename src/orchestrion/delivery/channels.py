"""Performing side effects on the world, and reconciling ones whose outcome is unknown.

Channels: the local outbox (files, the embedded default), a webhook (JSON POST signed with
HMAC-SHA256 in ``X-Orchestrion-Signature``), and an order provider (``settings.order_url``; unset
means orders are written to ``outbox/orders/``). Every request carries the ledger's key as its
``Idempotency-Key``, so a provider that honours it never acts twice for one key.

Only a 2xx answer is success: a redirect is not followed and fails the effect (the receiver must
be configured with its final URL), a 4xx is refused, a 5xx or no answer leaves the outcome unknown.
Whatever goes wrong, :meth:`Effector.perform` and :meth:`Effector.reconcile` raise only
RetryableError (outcome unknown: reconcile later) or TerminalError (certainly not done). A webhook
carries the published deliverable only (:func:`orchestrion.delivery.rendering.published`), never its plan,
trace, review, tokens or cost.

Reconciling: an outbox file or order file that exists is done; an order provider is asked
``GET {order_url}?idempotency_key=KEY`` (200 with the order, or 404); a webhook is sent again with
the same key (receivers de-duplicate on it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from orchestrion.config import Format, Settings
from orchestrion.delivery.rendering import published, render
from orchestrion.encoding import to_json_bytes
from orchestrion.errors import PolicyViolation, RetryableError, TerminalError
from orchestrion.tools.policies import webhook_origin

__all__ = ["Effector", "file_part", "sign"]


def sign(secret: str, body: bytes) -> str:
    """The webhook signature header value: ``sha256=<hex hmac>``.

    >>> sign("k", b"{}")[:7]
    'sha256='
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def file_part(text: str, limit: int, *, hashed: bool = True) -> str:
    """``text`` as part of a file name: ASCII letters, digits, ``-``, ``_`` and ``.`` (anything else
    becomes ``_``), no leading dot, at most ``limit`` characters. When that changed more than a
    ``:`` (ids are ``dataset:id``) and ``hashed``, a prefix plus a short hash of the whole text,
    so different ids never share a name.

    >>> file_part("online-retail:12345", 64)
    'online-retail_12345'
    >>> len(file_part("x" * 230, 64)), file_part("音乐" * 40, 64)[:3], file_part("../etc", 64)[:1] != "."
    (64, '___', True)
    """
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in text).lstrip(".")
    if len(cleaned) <= limit and (not hashed or cleaned == text.replace(":", "_")):
        return cleaned
    if not hashed:
        return cleaned[:limit]
    digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
    return f"{cleaned[: limit - len(digest) - 1]}-{digest}"


def _write(path: Path, data: bytes, *, atomic: bool = True) -> None:
    """Write ``data``, creating the folder when missing; ``atomic`` writes a temporary file and
    renames it, so the file is whole or absent."""
    target = path.with_name(path.name + ".tmp") if atomic else path
    try:
        target.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if atomic:
        os.replace(target, path)


def _whole(html: Path) -> bool:
    """Whether an outbox HTML file was written to its end (:func:`render_html` closes the document)."""
    try:
        with html.open("rb") as handle:
            handle.seek(max(0, html.stat().st_size - len(_HTML_END)))
            return handle.read() == _HTML_END
    except FileNotFoundError:
        return False


_HTML_END = b"</html>"


class Effector:
    """Runs effects for one process; ``http`` is injected (tests pass a client for a loopback server)."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.outbox = settings.outbox_path
        self._http = http
        self._owned = http is None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP client it made (an injected one is its owner's to close)."""
        with self._lock:
            if self._owned and self._http is not None:
                self._http.close()
                self._http = None

    @property
    def http(self) -> httpx.Client:
        with self._lock:  # effects run on a few threads at once
            if self._http is None:
                self._http = httpx.Client(timeout=10.0)
            return self._http

    def outbox_paths(self, deliverable: Mapping[str, Any]) -> dict[Format, Path]:
        """Where a deliverable's files go: ``outbox/<date>/<user>--<id>.<format>``, one per format
        of ``OUTBOX_FORMATS`` (html last: it marks the deliverable delivered).

        Names are safe and bounded whatever the ids (:func:`file_part`): a 230-character or a CJK
        user id gives a short ASCII name, never ENAMETOOLONG, never a hidden file; the deliverable
        id keeps names unique.

        One folder per day, not one per user and day: where creating a file or a folder costs up
        to a millisecond (this project's virtual disk), per-user folders were a third of a daily
        run's file operations.
        """
        folder = self.outbox / file_part(str(deliverable["date"]), 16)
        user = file_part(str(deliverable["user_id"]), 64, hashed=False) or "user"
        stem = f"{user}--{file_part(str(deliverable['deliverable_id']), 64)}"
        ordered = sorted(self.settings.outbox_formats, key=lambda fmt: fmt == "html")
        return {fmt: folder / f"{stem}.{fmt}" for fmt in ordered}

    def perform(self, tool: str, effect: Mapping[str, Any], key: str, deliverable: Mapping[str, Any]) -> dict[str, Any]:
        """Do the effect once; raises RetryableError when its outcome is unknown, TerminalError when refused."""
        if tool == "place_order":
            return self._order(effect, key)
        if effect.get("channel") == "webhook":
            return self._webhook(str(effect["url"]), key, deliverable)
        paths = self.outbox_paths(deliverable)
        shown = dict(deliverable)
        # The HTML file is the mark of a finished delivery: written last, and counted only when
        # whole (see _whole), so a crash part-way leaves the effect to be performed again in full.
        # No temporary file and rename: on a slow virtual disk every file operation counts.
        for fmt, path in paths.items():
            _write(path, self.render(shown, fmt), atomic=False)
        return {"path": str(paths["html"])}

    def render(self, deliverable: Mapping[str, Any], fmt: Format) -> bytes:
        """One outbox file's bytes: money in the configured locale, links to the configured web page."""
        return render(dict(deliverable), fmt, locale=self.settings.locale, base_url=self.settings.web_url)[0]

    def refresh(self, deliverable: Mapping[str, Any]) -> bool:
        """Write a published deliverable's outbox files again with what it is now (its status after
        an approval, a rejection, a cancellation, a refusal), so a file never tells an old story.

        Only a deliverable already published to the outbox (its HTML file whole) is written: this
        updates a side effect that happened, never performs one. Each file is replaced atomically
        (a reader sees the old page or the new one). Returns whether files were written.
        """
        paths = self.outbox_paths(deliverable)
        if not _whole(paths["html"]):
            return False
        for fmt, path in paths.items():
            _write(path, self.render(deliverable, fmt))
        return True

    def reconcile(
        self, tool: str, effect: Mapping[str, Any], key: str, deliverable: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The result of an effect claimed earlier whose outcome is unknown, or None if it did not happen."""
        if tool == "place_order":
            if self.settings.order_url is None:
                path = self.outbox / "orders" / f"{key}.json"
                return {"order": str(path), "reconciled": True} if path.exists() else None
            try:
                response = self.http.get(self.settings.order_url, params={"idempotency_key": key})
            except httpx.TransportError as exc:
                raise RetryableError(f"order provider unreachable ({exc}); the order will be reconciled") from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise TerminalError(f"order provider lookup failed: {exc}") from exc
            if response.status_code == 404:
                return None
            if not 200 <= response.status_code < 300:
                raise RetryableError(f"order provider lookup answered {response.status_code}; asked again later")
            return {**_json(response), "reconciled": True}
        if effect.get("channel") == "webhook":
            return {**self._webhook(str(effect["url"]), key, deliverable), "reconciled": True}
        html = self.outbox_paths(deliverable)["html"]
        return {"path": str(html), "reconciled": True} if _whole(html) else None

    def _order(self, effect: Mapping[str, Any], key: str) -> dict[str, Any]:
        body = {"idempotency_key": key, **effect}
        if self.settings.order_url is None:
            path = self.outbox / "orders" / f"{key}.json"
            _write(path, to_json_bytes(body))
            return {"order": str(path)}
        response = self._post(
            "order provider",
            self.settings.order_url,
            "the order will be reconciled",
            json=body,
            headers={"Idempotency-Key": key},
        )
        return _json(response)

    def _webhook(self, url: str, key: str, deliverable: Mapping[str, Any]) -> dict[str, Any]:
        try:  # checked when the model asked; checked again here, so nothing else reaches the sender
            webhook_origin(url)
        except PolicyViolation as exc:
            raise TerminalError(exc.detail) from exc
        body = to_json_bytes(published(deliverable))
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.settings.webhook_secret:
            headers["X-Orchestrion-Signature"] = sign(self.settings.webhook_secret, body)
        response = self._post(
            f"webhook {url}", url, "it will be sent again with the same key", content=body, headers=headers
        )
        return {"status": response.status_code}

    def _post(self, who: str, url: str, then: str, **request: Any) -> httpx.Response:
        """POST; an unknown outcome (no answer, 5xx) is RetryableError; a refusal (4xx), a redirect
        (3xx, never followed), a bad URL or a request that cannot be built is TerminalError."""
        try:
            response = self.http.post(url, follow_redirects=False, **request)
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise TerminalError(f"{who} cannot be sent ({exc}); fix the URL") from exc
        except httpx.TransportError as exc:
            raise RetryableError(f"{who} unreachable ({exc}); {then}") from exc
        except Exception as exc:  # httpx.InvalidURL, a header it will not send, ...: nothing left here
            raise TerminalError(f"{who} cannot be sent ({type(exc).__name__}: {exc}); fix the URL") from exc
        if response.status_code >= 500:
            raise RetryableError(f"{who} answered {response.status_code}; {then}")
        if 300 <= response.status_code < 400:
            where = response.headers.get("location", "")[:200]
            raise TerminalError(f"{who} answered {response.status_code} (a redirect to {where!r}, not followed)")
        if not 200 <= response.status_code < 300:
            raise TerminalError(f"{who} refused it: {response.status_code} {response.text[:200]}")
        return response


def _json(response: httpx.Response) -> dict[str, Any]:
    """A 2xx answer's JSON object; a body that is not one is kept as text (the effect did happen)."""
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "body": response.text[:500]}
    return dict(body) if isinstance(body, dict) else {"status": response.status_code, "body": body}
