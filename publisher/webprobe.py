"""Adapter: one HTTPS POST from this machine to the public base_url (`publisher doctor`'s
one-click unsubscribe check). urllib, certificate verified, body and time bounded."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

__all__ = ["post_status"]


def post_status(url: str, timeout: float) -> int | str:
    """The HTTP status a one-click unsubscribe POST (RFC 8058) to `url` gets, or why no
    answer came (the text of the error)."""
    request = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            answer.read(65536)
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason) or type(exc).__name__
