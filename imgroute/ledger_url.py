"""A team ledger's URL (postgresql://USER:PASSWORD@HOST/DB): what makes one, and how it is shown.
Its password never appears in output, errors, logs or --json: everything that shows a ledger's URL
shows `redacted(url)`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def redacted(url: str) -> str:
    """The URL with its password (if any) shown as ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # (a malformed netloc: show none of it)
        return "(a URL that cannot be read)"
    if password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def scrubbed(text: str, url: str) -> str:
    """`text` (a driver's error message) with the URL's password, if any, replaced by ***."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text
