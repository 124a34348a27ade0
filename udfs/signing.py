"""HMAC-SHA256 keys that sign snapshot envelopes in the job and verify them wherever one is read.

`signing:` in the config names the keys, one file each, by key id; the job signs with `key_id` and
writes that id into the envelope's signed metadata; readers (serving replicas, the learner's start
from snapshots, the cold-start template) accept an envelope signed with any key listed. Rotating a
key is therefore: add the new key to `signing.keys` everywhere, then make it `key_id` (README: Serving
replicas). A key file holds the secret as text (surrounding whitespace is ignored), at least
`MIN_KEY_BYTES` long: `scripts/setup.sh` writes a random local one to `run/keys/`.

HMAC is symmetric: whoever can verify could sign. Keep the key files readable to the job and the
replicas only.

>>> keyring = Keyring({"k2": b"x" * 32, "k1": b"y" * 32}, signing_key_id="k2")
>>> mac = keyring.sign(b"envelope bytes")
>>> keyring.verify("k2", b"envelope bytes", mac)
>>> keyring.verify("k2", b"envelope bytez", mac)
Traceback (most recent call last):
...
udfs.signing.SignatureError: signature does not match key 'k2'
>>> keyring.verify("k0", b"envelope bytes", mac)
Traceback (most recent call last):
...
udfs.signing.SignatureError: signed with key 'k0', which is not among the accepted keys (k1, k2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

MAC_BYTES = hashlib.sha256().digest_size
MIN_KEY_BYTES = 32


class SignatureError(ValueError):
    """An envelope that is unsigned, signed with a key not accepted here, or altered since it was signed."""


class Keyring:
    """Secrets by key id: all of them verify, `signing_key_id`'s signs."""

    def __init__(self, keys: dict[str, bytes], signing_key_id: str | None = None):
        self._keys = dict(keys)
        self.signing_key_id = signing_key_id

    @classmethod
    def ephemeral(cls) -> "Keyring":
        """A random key nothing else knows: for a replica that follows no topic."""
        return cls({"ephemeral": secrets.token_bytes(MIN_KEY_BYTES)}, "ephemeral")

    def sign(self, message: bytes) -> bytes:
        if self.signing_key_id is None:
            raise SignatureError("this keyring only verifies: no signing.key_id")
        return hmac.digest(self._keys[self.signing_key_id], message, "sha256")

    def verify(self, key_id, message: bytes, mac: bytes) -> None:
        secret = self._keys.get(key_id) if isinstance(key_id, str) else None
        if secret is None:
            raise SignatureError(
                f"signed with key {key_id!r}, which is not among the accepted keys ({', '.join(sorted(self._keys))})"
            )
        if not hmac.compare_digest(hmac.digest(secret, message, "sha256"), mac):
            raise SignatureError(f"signature does not match key {key_id!r}")

    def __repr__(self) -> str:  # never the secrets
        return f"Keyring(keys={sorted(self._keys)}, signing_key_id={self.signing_key_id!r})"


@dataclasses.dataclass(frozen=True)
class SigningSettings:
    """Where the keys are: (key id, file) pairs and the id the job signs with. Only paths travel with
    the job; each process reads the files itself (`keyring()`), so the secrets stay out of the job graph."""

    key_files: tuple = ()
    key_id: str = ""

    @classmethod
    def from_config(cls, config) -> "SigningSettings":
        keys = config.get("signing.keys", None)
        if not isinstance(keys, dict) or not keys:
            raise config.error(
                "signing.keys",
                "must map key ids to key files, e.g. {local: run/keys/snapshots.key} "
                "(scripts/setup.sh creates that local key)",
            )
        key_id = config.get("signing.key_id", None)
        if key_id not in keys:
            raise config.error(
                "signing.key_id", f"must be one of signing.keys ({', '.join(map(str, keys))}), not {key_id!r}"
            )
        settings = cls(tuple((str(k), config.file_path(str(path))) for k, path in keys.items()), str(key_id))
        settings.keyring(config.error)  # a missing or short key fails here, naming its setting
        return settings

    def keyring(self, error=None) -> Keyring:
        """The keys, read from their files; `error(setting, message)` makes the exception to raise."""
        error = error or (lambda path, message: SignatureError(f"'{path}' {message}"))
        keys = {}
        for key_id, path in self.key_files:
            try:
                with open(path, "rb") as f:
                    secret = f.read().strip()
            except OSError as e:
                raise error(f"signing.keys.{key_id}", f"cannot read {path}: {e.strerror}") from None
            if len(secret) < MIN_KEY_BYTES:
                raise error(
                    f"signing.keys.{key_id}", f"{path} holds {len(secret)} bytes; a key needs at least {MIN_KEY_BYTES}"
                )
            keys[key_id] = secret
        return Keyring(keys, self.key_id)
