"""Strict URL parsing for egress (Smokescreen's hostport cases and more).

Only `http` and `https` with a bare host and an allowed port are accepted.
Everything that parsers disagree about is refused outright rather than
interpreted: user info (`allowed.com@127.0.0.1`), fragments
(`127.0.0.1#@allowed.com`), backslashes, whitespace and control characters,
percent-encoded or non-ASCII hosts (homoglyphs such as a Cyrillic `а`; write
`xn--` instead), numeric hosts in any spelling other than a canonical
dotted quad or bracketed IPv6, and a port that is empty, zero, signed or out
of range. An IP literal is only accepted inside an operator allow range.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin

from vivified.core.egress._config import IPNetwork
from vivified.core.egress._errors import url_invalid

MAX_URL_LENGTH = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}
# Printable ASCII without space: anything else is refused before parsing.
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_REG_NAME = re.compile(r"[a-z0-9.-]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A label that some parser (inet_aton, WHATWG) reads as part of an IPv4 number.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class EgressUrl:
    """A checked absolute URL. `ip` is set when the host is an IP literal."""

    scheme: str
    host: str
    port: int
    target: str
    ip: IPAddress | None = None

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    def text(self) -> str:
        return f"{self.scheme}://{self.authority}{self.target}"


def _port(text: str, scheme: str, allowed: frozenset[int]) -> int:
    if text == "":
        port = DEFAULT_PORTS[scheme]
    elif not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise url_invalid(f"port {text!r} is not a TCP port", "port_invalid")
    else:
        port = int(text)
    if port not in allowed:
        raise url_invalid(f"port {port} is not in this plugin's allowed ports", "port_not_allowed")
    return port


def _host(authority: str) -> tuple[str, str, IPAddress | None]:
    """(host, port text, ip literal) from an authority without user info."""
    if authority.startswith("["):
        inner, bracket, rest = authority[1:].partition("]")
        if not bracket or "[" in inner or "]" in rest or (rest and not rest.startswith(":")):
            raise url_invalid("malformed bracketed host", "host_invalid")
        try:
            ip6 = ipaddress.IPv6Address(inner)
        except ValueError:
            raise url_invalid("brackets must hold an IPv6 address", "host_invalid") from None
        return str(ip6), rest[1:] if rest else "", ip6
    host, colon, port = authority.partition(":")
    if colon and port == "":
        raise url_invalid("empty port", "port_invalid")
    if "[" in authority or "]" in authority or ":" in port:
        raise url_invalid("malformed host", "host_invalid")
    return host, port, None


def _reg_name(host: str) -> str:
    host = host.lower()
    host = host.removesuffix(".")
    if not host or len(host) > 253 or not _REG_NAME.fullmatch(host):
        raise url_invalid("the host must be an ASCII host name (IDNA names in xn-- form)", "host_invalid")
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise url_invalid("the host has an empty or malformed label", "host_invalid")
    return host


def parse_url(text: str, *, allowed_ports: frozenset[int], allow_ranges: Iterable[IPNetwork] = ()) -> EgressUrl:
    """Parse and check an egress URL; raises InvalidArgument(EGRESS_URL_INVALID)."""
    if not isinstance(text, str) or not text or len(text) > MAX_URL_LENGTH:
        raise url_invalid("the URL is empty or too long", "url_length")
    if not _VISIBLE_ASCII.fullmatch(text):
        raise url_invalid("the URL has non-ASCII, whitespace or control characters", "url_characters")
    if "\\" in text or "#" in text:
        raise url_invalid("backslashes and fragments are not accepted in egress URLs", "url_characters")
    match = _SCHEME.match(text)
    if match is None:
        raise url_invalid("the URL must be absolute (scheme://host/...)", "scheme")
    scheme = match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise url_invalid(f"scheme {scheme!r} is not allowed; use http or https", "scheme")
    rest = text[match.end() :]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:] or "/"
    if target.startswith("?"):
        target = "/" + target
    if "@" in authority:
        raise url_invalid("user info in URLs is not accepted", "userinfo")
    if "%" in authority:
        raise url_invalid("percent-encoded hosts are not accepted", "host_invalid")
    raw_host, port_text, ip = _host(authority)
    if ip is None:
        try:
            ip = ipaddress.IPv4Address(raw_host)
        except ValueError:
            host = _reg_name(raw_host)
            if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
                raise url_invalid("numeric hosts must be a canonical IP address", "ip_literal") from None
        else:
            host = str(ip)
    else:
        host = raw_host
    if ip is not None:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if not any((mapped or ip) in network for network in allow_ranges):
            raise url_invalid("IP address literals are not accepted; name the host", "ip_literal")
    return EgressUrl(scheme, host, _port(port_text, scheme, allowed_ports), target, ip)


def redirect_url(base: EgressUrl, location: str) -> str:
    """The absolute URL a Location header points to (checked again by parse_url)."""
    location = location.strip()
    if not location.isascii() or "\\" in location:
        # Refuse before urljoin normalises anything a browser would read differently.
        raise url_invalid("the redirect Location is not an ASCII URL", "url_characters")
    try:
        return urljoin(base.text(), location.split("#", 1)[0])
    except ValueError:  # urlsplit: unbalanced brackets ("Invalid IPv6 URL"), found by the J6 fuzz test
        raise url_invalid("the redirect Location has a malformed host", "host_invalid") from None
