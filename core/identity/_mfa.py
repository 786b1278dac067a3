"""The second factor: TOTP codes and backup codes, with their own throttle (B9).

A wrong code counts against the user's MFA counter, separate from the
password counter; at the threshold MFA locks (stored, escalating). A TOTP
step is accepted once: the last used step is stored and a code for it or an
earlier one is refused, so a code seen over a shoulder cannot be replayed.
"""

from __future__ import annotations

import secrets

from vivified.core.errors import Unauthenticated
from vivified.core.identity._secret_box import SecretBox
from vivified.core.identity._totp import decode_secret, match_step
from vivified.core.identity._users import Lockout, UserRecord, UserStore

_DOMAIN = "vivified.identity"
BACKUP_CODES = 10


def new_backup_codes() -> list[str]:
    """Ten single-use codes of 80 random bits each, grouped for reading."""
    codes = []
    for _ in range(BACKUP_CODES):
        raw = secrets.token_hex(10)
        codes.append("-".join(raw[i : i + 5] for i in range(0, 20, 5)))
    return codes


def _normalise_backup(code: str) -> str:
    raw = code.replace("-", "").strip().lower()
    return "-".join(raw[i : i + 5] for i in range(0, 20, 5)) if len(raw) == 20 else ""


class MfaChecker:
    """Checks codes against a user's secret and keeps the MFA throttle."""

    def __init__(self, store: UserStore, lockout: Lockout, box: SecretBox) -> None:
        self._store = store
        self._lockout = lockout
        self._box = box

    async def _take_attempt(self, user: UserRecord) -> None:
        # Counted before the code is checked: concurrent guesses cannot
        # outrun the threshold. A right code resets the counter.
        if not await self._store.take_attempt(user.user_id, self._lockout, mfa=True):
            raise Unauthenticated(
                "too many wrong codes; MFA is locked for a while", reason="MFA_LOCKED", domain=_DOMAIN
            )

    @staticmethod
    def _wrong() -> Unauthenticated:
        return Unauthenticated("the code is wrong or was already used", reason="MFA_CODE_INVALID", domain=_DOMAIN)

    async def check_totp(self, user: UserRecord, sealed_secret: str, code: str) -> None:
        """Accept a fresh TOTP code for the (sealed) secret or raise (and count it)."""
        await self._take_attempt(user)
        secret = decode_secret(self._box.open(sealed_secret, user.user_id))
        step = match_step(secret, code.strip(), self._store.now(), user.mfa_last_step)
        if step is None or not await self._store.mfa_step_used(user.user_id, step):
            raise self._wrong()

    async def check(self, user: UserRecord, code: str) -> None:
        """Accept an enrolled user's TOTP or unused backup code, or raise."""
        if user.mfa_secret is None:
            raise Unauthenticated("MFA is not enrolled", reason="MFA_CODE_INVALID", domain=_DOMAIN)
        code = code.strip()
        if len(code) <= 6:
            await self.check_totp(user, user.mfa_secret, code)
            return
        await self._take_attempt(user)
        backup = _normalise_backup(code)
        if not backup or not await self._store.use_backup_code(user.user_id, backup):
            raise self._wrong()
