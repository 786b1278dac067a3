"""The plugin's key and certificate kept in its data dir, so a restarted
process resumes its registration (`PluginRegistryService/Resume`) instead of
needing a new join token.

One file, `<data_dir>/vivified-identity.json` (mode 0600, written to a
temporary file in the same directory and renamed over the old one, so a
crash leaves the previous or the new identity, never half of one)::

    {"format": 1, "spiffe_id": ..., "key_pem": ..., "chain_pem": ...,
     "roots_pem": ..., "received_at": "<ISO 8601 UTC>", "core_address": ...}

`roots_pem` is the trust bundle in force when it was written (the CA file's,
or the last renewal's during a CA rotation); `core_address` the mTLS address
in use (a plugin told it only by RegisterResponse.core_endpoint needs it to
resume; readers ignore keys they do not know). The file is written after
Register and after every renewal, and removed when the plugin stops cleanly
(which deregisters: the certificate is revoked anyway) and when the core
refuses to resume with it for good. Its layout is part of the plugin protocol
(docs/plugin-protocol.md §7): the Node.js SDK writes the same file, and
`vivified up` reads it to decide whether a restart can resume."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vivified.sdk._errors import VivifiedSDKError
from vivified.sdk._identity import IssuedCertificate, load_issued

IDENTITY_FILE = "vivified-identity.json"
_FORMAT = 1
_log = logging.getLogger("vivified.sdk")


@dataclass(frozen=True)
class StoredIdentity:
    """A stored key and certificate, checked, and the roots stored with them."""

    issued: IssuedCertificate
    roots_pem: bytes


class IdentityStore:
    """Reads and writes `<data_dir>/vivified-identity.json` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / IDENTITY_FILE

    def save(self, spiffe_id: str, issued: IssuedCertificate, roots_pem: bytes, core_address: str) -> None:
        """Replace the stored identity atomically (mode 0600 from creation)."""
        document = {
            "format": _FORMAT,
            "spiffe_id": spiffe_id,
            "key_pem": issued.key_pem.decode(),
            "chain_pem": issued.chain_pem.decode(),
            "roots_pem": roots_pem.decode(),
            "received_at": issued.received_at.isoformat(),
            "core_address": core_address,
        }
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600: the key is never readable by others, not even briefly.
        handle, temporary = tempfile.mkstemp(prefix=".vivified-identity-", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(document, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def load(self, spiffe_id: str, now: dt.datetime, margin: dt.timedelta) -> StoredIdentity | None:
        """The stored identity of `spiffe_id` if there is one that is usable
        for at least `margin` more; None otherwise. An unusable file (another
        plugin's, expired, unreadable, a key that does not match) is removed."""
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return self._unusable(f"cannot be read ({exc})")
        try:
            if document["format"] != _FORMAT:
                return self._unusable(f"has format {document['format']!r}, not {_FORMAT}")
            if document["spiffe_id"] != spiffe_id:
                return self._unusable(f"belongs to {document['spiffe_id']!r}, not {spiffe_id!r}")
            received_at = dt.datetime.fromisoformat(document["received_at"])
            issued = load_issued(document["chain_pem"].encode(), document["key_pem"].encode(), spiffe_id, received_at)
            roots = document["roots_pem"].encode()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return self._unusable(f"is malformed ({exc.__class__.__name__}: {exc})")
        except VivifiedSDKError as exc:
            return self._unusable(exc.message)
        if issued.not_after - margin <= now:
            return self._unusable(f"holds a certificate that expired or expires at {issued.not_after.isoformat()}")
        return StoredIdentity(issued, roots)

    def _unusable(self, why: str) -> StoredIdentity | None:
        _log.warning("stored identity %s %s; removing it (a join token is needed to register again)", self.path, why)
        self.discard()
        return None

    def discard(self) -> None:
        """Remove the stored identity (nothing happens when there is none)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
