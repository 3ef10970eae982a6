"""Keeping the API key out of logs, messages and reprs."""

from __future__ import annotations

import hashlib

__all__ = ["key_id", "mask_key"]


def mask_key(api_key: str | None) -> str:
    """Return a form of ``api_key`` that is safe to show: ``vc_…9f3a``.

    A short prefix ending in ``_`` (such as ``vc_``) and the last four characters are kept when the
    key is long enough that they give nothing useful away; shorter keys are shown as ``…`` only.
    """
    if not api_key:
        return "<no key>"
    key = str(api_key)
    if len(key) < 12:
        return "…"
    prefix = ""
    underscore = key.find("_")
    if 0 < underscore <= 3:
        prefix = key[: underscore + 1]
    return f"{prefix}…{key[-4:]}"


def key_id(api_key: str, api_url: str = "") -> str:
    """A stable, non-reversible id for an account (and API), for registries and shared state."""
    digest = hashlib.sha256(f"{api_url}\0{api_key}".encode()).hexdigest()
    return digest[:16]


def safe_url(url: object) -> str:
    """A URL fit for logs and reprs: no user name, password or ``password=`` query value."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    text = str(url)
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
        query = parts.query
        if query:
            pairs = [(k, "***" if "pass" in k.lower() or "token" in k.lower() else v)
                     for k, v in parse_qsl(query, keep_blank_values=True)]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"
