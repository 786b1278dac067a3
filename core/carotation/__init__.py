"""The running core's side of a CA rotation: performing its steps when due,
auditing each, re-keying the core's listeners and outgoing calls, and
warning (metric and `SecurityAlert`) well before a CA certificate expires.

Public surface::

    CARotationDriver   tick() / start() / stop(); see `_driver.py`
    CertificateExpiry  the CA expiry gauge and warning policy
    LeafExpiry         the same for each active plugin's newest certificate
    CoreRekeyer        applies a trust change to the core's listeners and calls
"""

from vivified.core.carotation._driver import HOLDERS_FILE, CARotationDriver, TrustChange
from vivified.core.carotation._expiry import CertificateExpiry, LeafExpiry
from vivified.core.carotation._rekey import CoreRekeyer

__all__ = ["HOLDERS_FILE", "CARotationDriver", "CertificateExpiry", "CoreRekeyer", "LeafExpiry", "TrustChange"]
