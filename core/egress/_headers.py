"""Which headers cross the proxy, in each direction.

From the plugin: names must be HTTP tokens and values ASCII without control
characters (no header injection or request smuggling). Hop-by-hop headers,
any header a `Connection` header names, `Proxy-*`, cookies, `X-Vivified-*`
and the headers the core sets itself (`Host`, `Content-Length`,
`Accept-Encoding`, `Expect`) are dropped.
Credential headers are added after filtering and replace any the plugin sent
under the same name.

From the upstream: hop-by-hop headers, `Proxy-*` and the platform's own
`X-Vivified-*` headers are stripped; after the core decoded the body,
`Content-Encoding` and `Content-Length` no longer describe it and go too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vivified.core.egress._config import TOKEN
from vivified.core.egress._errors import request_invalid

MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
_CORE_SET = frozenset({"host", "content-length", "accept-encoding", "expect"})
_COOKIES = frozenset({"cookie", "cookie2"})
INTERNAL_PREFIX = "x-vivified-"

Headers = list[tuple[str, str]]


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def _dropped(name: str, named: set[str]) -> bool:
    return name in HOP_BY_HOP or name in named or name.startswith(("proxy-", INTERNAL_PREFIX))


def request_headers(pairs: Sequence[tuple[str, str]]) -> Headers:
    """Validate the plugin's headers and keep the ones that may be forwarded."""
    if len(pairs) > MAX_HEADERS or sum(len(n) + len(v) for n, v in pairs) > MAX_HEADER_BYTES:
        raise request_invalid(f"at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of headers")
    for name, value in pairs:
        if not TOKEN.fullmatch(name):
            raise request_invalid(f"header name {name[:64]!r} is not an HTTP token")
        if not value.isascii() or any((ch < " " and ch != "\t") or ch == "\x7f" for ch in value):
            raise request_invalid(f"header {name!r} has a value with control or non-ASCII characters")
    named = _connection_named(pairs)
    return [
        (name, value.strip())
        for name, value in pairs
        if not _dropped(name.lower(), named) and name.lower() not in _CORE_SET and name.lower() not in _COOKIES
    ]


def with_credentials(headers: Headers, credentials: Sequence[tuple[str, str]]) -> Headers:
    """Add credential headers, replacing the plugin's headers of the same names."""
    if not credentials:
        return headers
    replaced = {name.lower() for name, _ in credentials}
    return [(n, v) for n, v in headers if n.lower() not in replaced] + list(credentials)


def without_authorization(headers: Headers) -> Headers:
    """The plugin's own Authorization does not follow a redirect to another host."""
    return [(n, v) for n, v in headers if n.lower() != "authorization"]


def response_headers(pairs: Sequence[tuple[str, str]], *, decoded: bool) -> Headers:
    """The upstream's headers a plugin gets back."""
    named = _connection_named(pairs)
    body_framing = {"content-encoding", "content-length"} if decoded else set()
    return [(n, v) for n, v in pairs if not _dropped(n.lower(), named) and n.lower() not in body_framing]
