"""URL helpers: log-safe URLs, origins, loopback hosts and http(s) URL checks."""

from __future__ import annotations

import functools
import ipaddress

from yarl import URL

from ._errors import ConfigurationError

__all__ = ["check_base_url", "is_loopback_host", "origin_of", "parse_http_url", "safe_url"]


def safe_url(url: str | URL) -> str:
    """``url`` without query string, fragment or user info: safe for logs and errors."""
    text = str(url)
    if "?" not in text and "#" not in text and "@" not in text:
        return text
    try:
        parsed = URL(text)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<unparsable URL>"


def origin_of(url: str | URL) -> str:
    """The origin ``scheme://host[:port]`` of an absolute ``url``.

    yarl's :meth:`~yarl.URL.origin`: scheme and host lowercased, the default port
    omitted, IPv6 hosts in brackets, international hosts in their IDNA form.

    Raises:
        ValueError: ``url`` is not an absolute URL.
    """
    parsed = url if isinstance(url, URL) else URL(url)
    return str(parsed.origin())


@functools.lru_cache(maxsize=256)  # asked for every lookup resolved; hosts are few
def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_http_url(url: str) -> URL:
    """Parse an absolute ``http(s)://`` URL without user info.

    Raises:
        ValueError: With the reason (safe to show: it never echoes the URL).
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise ValueError("is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an absolute http(s) URL such as https://app.all-hands.dev")
    if parsed.user is not None or parsed.password is not None:
        raise ValueError("must not contain user info; pass keys as arguments or headers")
    return parsed


def check_base_url(url: str, *, allow_insecure_http: bool, what: str = "cloud_api_url") -> str:
    """Validate a base URL and return it without a trailing slash.

    Raises:
        ConfigurationError: Not an absolute http(s) URL, or ``http://`` to a host that is
            not loopback while ``allow_insecure_http`` is false.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{what} must be a non-empty URL string")
    text = url.strip().rstrip("/")
    try:
        parsed = parse_http_url(text)
    except ValueError as exc:
        reason = str(exc)
    else:
        if parsed.query_string or parsed.fragment:
            raise ConfigurationError(f"{what} must not contain a query string or fragment")
        insecure = parsed.scheme == "http" and not is_loopback_host(parsed.host)
        if insecure and not allow_insecure_http:
            raise ConfigurationError(
                f"refusing insecure http:// {what} {safe_url(text)!r}: keys would travel in "
                "clear text. Use https://, or pass allow_insecure_http=True "
                "(--allow-insecure-http on the command line) if you really mean it"
            )
        return text
    raise ConfigurationError(f"{what} {reason}, got {safe_url(text)!r}")
