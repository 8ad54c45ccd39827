"""A team ledger's URL (postgresql://USER:PASSWORD@HOST/DB): what makes one, and how it is shown.
Its password never appears in output, errors, logs or --json: everything that shows a ledger's URL
shows `redacted(url)`, which hides the password wherever a URL may carry one (its user part, or a
`password=` / `sslpassword=` parameter), and shows nothing of a value that is not a URL at all
(a libpq `key=value` string may hold a password anywhere)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
SECRET_PARAMETERS = {"password", "sslpassword"}
NOT_A_URL = "(a value that is not a URL, not shown)"


def is_postgres_url(url: str) -> bool:
    try:
        return urlsplit(url).scheme in SCHEMES
    except ValueError:
        return False


def redacted(url: str) -> str:
    """The URL with its passwords shown as ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
        user, host, port = parts.username or "", parts.hostname or "", parts.port
    except ValueError:
        return NOT_A_URL
    if not parts.scheme or "://" not in url:
        return NOT_A_URL
    netloc = parts.netloc
    if password is not None:
        netloc = f"{user}:***@{host}{f':{port}' if port else ''}"
    query = [
        (k, "***" if k.lower() in SECRET_PARAMETERS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/*:")))


def secrets_of(url: str) -> list[str]:
    """Every password a URL carries, as written and decoded."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMETERS and v]
    except ValueError:
        return []
    return [variant for secret in found for variant in {secret, unquote(secret)}]


def scrubbed(text: str, url: str) -> str:
    """`text` (a driver's error message) with the URL's passwords, if any, replaced by ***."""
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
