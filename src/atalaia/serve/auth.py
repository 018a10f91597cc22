"""Passwords, tokens and rate limits for the door-access service.

- Admin passwords are hashed with scrypt (hashlib, a standard memory-hard KDF; n=2^14, r=8, p=1, 16-byte salt)
  and compared in constant time. Session and door tokens are 32 random bytes; only their SHA-256 is stored, so
  a copy of the database does not let anyone in.
- Rate limits are token buckets per client key (IP address, or IP + door), in memory: enough for one service
  process, which is how `atalaia serve` runs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from atalaia.errors import AtalaiaError

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AtalaiaError("the admin password needs at least 8 characters")
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${h.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; a missing or malformed hash still costs one scrypt (no user enumeration by timing)."""
    try:
        kind, n, r, p, salt, h = (stored or "").split("$")
        ok_format = kind == "scrypt"
        n, r, p, salt_b, want = int(n), int(r), int(p), bytes.fromhex(salt), bytes.fromhex(h)
    except ValueError:
        ok_format, n, r, p, salt_b, want = False, _N, _R, _P, b"\0" * 16, b"\0" * 32
    got = hashlib.scrypt(password.encode(), salt=salt_b, n=n, r=r, p=p, dklen=len(want))
    return ok_format and hmac.compare_digest(got, want)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RateLimiter:
    """Token bucket per key: `rate` requests per second on average, bursts of `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise AtalaiaError(f"a rate limit needs rate > 0 and burst >= 1, got {rate} and {burst}")
        self.rate, self.burst = float(rate), int(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
            if len(self._buckets) > 10_000:  # forget idle clients (bounded memory)
                for k in [k for k, (_, t) in self._buckets.items() if now - t > 3600]:
                    del self._buckets[k]
            return ok

    def retry_after(self, key: str) -> float:
        with self._lock:
            tokens, _ = self._buckets.get(key, (float(self.burst), 0.0))
        return max(0.0, (1.0 - tokens) / self.rate)


__all__ = ["RateLimiter", "hash_password", "new_token", "token_hash", "verify_password"]
