"""Channel credentials: entered by a broker's admin, stored encrypted in PostgreSQL, read by every process.

Envelope encryption. Each value is sealed with a fresh 256-bit data key (AES-GCM), and the data key is
sealed under the master key (AES-GCM), which only the processes hold (LEADFLOW_MASTER_KEY; without it,
on a database on loopback, a key generated once into ``$LEADFLOW_HOME/master.key``). Both seals are
bound to the row (``<broker_id>:<kind>`` as associated data), so a ciphertext copied onto another
broker's row does not open. A row names the master key that sealed it (``key_id``, the first 16 hex
digits of the key's SHA-256), so a rotation is: configure the new key as LEADFLOW_MASTER_KEY and the old
one in LEADFLOW_MASTER_KEYS_PREVIOUS, run ``leadflow credentials rotate`` (every row re-sealed under the
new key with a new data key), then drop the old key.

Readers (the ingest API, the dispatcher, the agent, the reports API's test buttons) keep every broker's
values in memory and look again every LEADFLOW_CREDENTIALS_REFRESH_S seconds (one cheap query, a
reload only when something changed): a new broker or a rotated secret works within seconds and without
a restart. A value stored here wins over the environment variable of the same credential
(``LEADFLOW_<SLUG>_<KIND>``), which keeps working for installs that have not moved their secrets yet.

Values never leave this module except to the code that uses them: no ``repr`` shows them, the pages
show a ``hint`` (the last four characters of a long secret, nothing of a short one), and nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import psycopg2.extensions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from leadflow.config import ConfigurationError, Settings, database_parts, on_loopback, secret
from leadflow.db.connection import transaction

log = logging.getLogger(__name__)

KEY_BYTES = 32
# A stored row no configured key opens: the credential counts as not configured (and not as the environment's).
UNREADABLE = ""
NONCE_BYTES = 12
KEY_FILE = "master.key"
MAX_VALUE_CHARS = 4096


class CredentialError(ValueError):
    """A value or a key that cannot be used; the message names the field or the variable, never a value."""


@dataclass(frozen=True)
class Kind:
    """One credential a channel needs: what the form calls it, whether it is secret, what shape it has."""

    name: str
    channel: str
    label: str
    secret: bool = True
    pattern: str = r"^\S{8,}$"
    shape: str = "at least 8 characters without spaces"
    # The webhook secrets Leadflow checks (not ones a provider hands out) can be generated on the page.
    generated: bool = False


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("telegram_bot_token", "telegram", "Bot token (de @BotFather)", pattern=r"^\d{1,20}:[A-Za-z0-9_-]{8,}$",
         shape="the token @BotFather gives: digits, a colon, then letters, digits, _ or -"),
    # Telegram allows 1-256 characters of A-Z, a-z, 0-9, _ and -; fewer than 16 is guessable.
    Kind("telegram_secret_token", "telegram", "Secreto del webhook", pattern=r"^[A-Za-z0-9_-]{16,256}$",
         shape="16 to 256 letters, digits, _ or - (Telegram's rule)", generated=True),
    Kind("whatsapp_app_secret", "whatsapp", "App secret (Meta)", pattern=r"^\S{16,}$",
         shape="the app secret of the Meta app: 16 or more characters without spaces"),
    Kind("whatsapp_verify_token", "whatsapp", "Verify token del webhook", pattern=r"^\S{16,256}$",
         shape="16 to 256 characters without spaces", generated=True),
    Kind("whatsapp_access_token", "whatsapp", "Access token (Cloud API)", pattern=r"^\S{16,}$",
         shape="16 or more characters without spaces"),
    Kind("whatsapp_phone_number_id", "whatsapp", "Phone number ID", secret=False, pattern=r"^\d{5,20}$",
         shape="the digits of the phone number ID (WhatsApp Manager)"),
    Kind("vapi_secret", "vapi", "Secreto del webhook (VAPI)", pattern=r"^\S{16,}$",
         shape="16 or more characters without spaces", generated=True),
    Kind("vapi_api_key", "vapi", "API key (VAPI)"),
    Kind("vapi_assistant_id", "vapi", "Assistant ID", secret=False, pattern=r"^[A-Za-z0-9_-]{4,100}$",
         shape="letters, digits, _ or -"),
    Kind("vapi_phone_number_id", "vapi", "Phone number ID (VAPI)", secret=False, pattern=r"^[A-Za-z0-9_-]{4,100}$",
         shape="letters, digits, _ or -"),
    Kind("bland_webhook_secret", "bland", "Secreto del webhook (Bland)", pattern=r"^\S{16,}$",
         shape="16 or more characters without spaces", generated=True),
    Kind("bland_api_key", "bland", "API key (Bland)"),
    Kind("form_api_key", "form", "API key del formulario web", pattern=r"^\S{16,}$",
         shape="16 or more characters without spaces", generated=True),
    # The broker's own OAuth client for connecting calendars (page Google Calendar); else LEADFLOW_GOOGLE_OAUTH_*.
    Kind("google_oauth_client_id", "google_calendar", "OAuth client ID (Google Cloud)", secret=False,
         pattern=r"^[A-Za-z0-9._-]{8,200}$", shape="the client ID Google Cloud gives (…apps.googleusercontent.com)"),
    Kind("google_oauth_client_secret", "google_calendar", "OAuth client secret (Google Cloud)"),
)}
CHANNELS: tuple[str, ...] = tuple(dict.fromkeys(k.channel for k in KINDS.values()))


def kinds_of(channel: str) -> list[Kind]:
    return [k for k in KINDS.values() if k.channel == channel]


def check_value(kind: str, value: str) -> str:
    """The value to store (surrounding blanks removed), or a CredentialError naming the field and its shape."""
    known = KINDS.get(kind)
    if known is None:
        raise CredentialError(f"{kind}: not a credential Leadflow knows ({', '.join(KINDS)})")
    cleaned = value.strip()
    if not cleaned:
        raise CredentialError(f"{kind}: empty")
    if len(cleaned) > MAX_VALUE_CHARS:
        raise CredentialError(f"{kind}: longer than {MAX_VALUE_CHARS} characters")
    # PostgreSQL's text refuses NUL, and a lone surrogate cannot be encoded: a clear refusal, not a 500.
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in cleaned):
        raise CredentialError(f"{kind}: control characters are not allowed")
    if not re.fullmatch(known.pattern, cleaned):
        raise CredentialError(f"{kind}: expected {known.shape}")
    return cleaned


def generate_value() -> str:
    """A webhook secret Leadflow checks: 256 bits in Telegram's alphabet (URL-safe base64 without padding)."""
    return secrets.token_urlsafe(32)


def hint(kind: str, value: str) -> str:
    """What a page may show of a stored value: an identifier whole; a secret's last four characters when it has
    at least 16 (the other twelve or more keep it unguessable), else nothing."""
    known = KINDS.get(kind)
    if known is not None and not known.secret:
        return value
    return f"…{value[-4:]}" if len(value) >= 16 else ""


# --- keys ---------------------------------------------------------------------------------------------

def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _decode_key(text: str, variable: str) -> bytes:
    try:
        key = base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{variable}: not base64") from exc
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{variable}: a key is {KEY_BYTES} bytes, base64-encoded (`leadflow credentials "
                                 f"new-key` prints one); this one is {len(key)}")
    return key


def new_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


@dataclass(frozen=True)
class MasterKeys:
    """The key new seals use and every key that may still open a row (the current one first)."""

    current: bytes = field(repr=False)
    previous: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def by_id(self, wanted: str) -> bytes:
        for key in (self.current, *self.previous):
            if key_id(key) == wanted:
                return key
        raise CredentialError(f"sealed under master key {wanted}, which is not configured: put it in "
                              "LEADFLOW_MASTER_KEYS_PREVIOUS until `leadflow credentials rotate` has run")

    @classmethod
    def from_settings(cls, settings: Settings, database_url: str | None = None) -> MasterKeys:
        """LEADFLOW_MASTER_KEY (and LEADFLOW_MASTER_KEYS_PREVIOUS). Unset: for a database on loopback (the
        embedded one), a key generated once into ``$LEADFLOW_HOME/master.key``; for any other, a
        ConfigurationError — credentials of a real install must not depend on a file on one machine."""
        previous = tuple(_decode_key(part, "LEADFLOW_MASTER_KEYS_PREVIOUS")
                         for part in settings.master_keys_previous.split(",") if part.strip())
        if settings.master_key:
            return cls(_decode_key(settings.master_key, "LEADFLOW_MASTER_KEY"), previous)
        url = database_url or settings.database_url
        host = database_parts(url)["host"] if url else "localhost"
        if not on_loopback(host):
            raise ConfigurationError(
                "LEADFLOW_MASTER_KEY must be set: channel credentials are stored encrypted under it "
                f"(`leadflow credentials new-key` prints one; the database at {host} is not on this machine)")
        return cls(_local_key(settings.state_dir / KEY_FILE), previous)


def _local_key(path: Path) -> bytes:
    """The embedded install's key, made on first use; readable by this user only.

    Written whole to a file of its own and then linked into place, so a process starting at the same
    moment never reads a half-written key and a crash never leaves an empty one; the first link wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key_text() + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the key
        finally:
            draft.unlink()
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(f"{path} is readable by others: `chmod 600 {path}` (it opens every stored "
                                 "channel credential)")
    return _decode_key(path.read_text(), str(path))


# --- sealing ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sealed:
    key_id: str
    wrapped_key: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


def _bound(broker_id: int, kind: str) -> bytes:
    return f"leadflow-credential:{broker_id}:{kind}".encode()


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


def seal(keys: MasterKeys, broker_id: int, kind: str, value: str) -> Sealed:
    aad = _bound(broker_id, kind)
    data_key = AESGCM.generate_key(bit_length=256)
    return Sealed(keys.current_id, _encrypt(keys.current, data_key, b"data-key:" + aad),
                  _encrypt(data_key, value.encode(), aad))


def unseal(keys: MasterKeys, broker_id: int, kind: str, sealed: Sealed) -> str:
    aad = _bound(broker_id, kind)
    master = keys.by_id(sealed.key_id)  # outside the try: its own message names the missing key
    try:
        data_key = _decrypt(master, sealed.wrapped_key, b"data-key:" + aad)
        return _decrypt(data_key, sealed.ciphertext, aad).decode()
    except (InvalidTag, ValueError) as exc:  # ValueError: a value cut short (no room for its nonce)
        raise CredentialError(f"broker {broker_id} {kind}: the stored value does not open (altered, or moved from "
                              "another row)") from exc


# --- the table ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredInfo:
    """What the pages may know of a stored credential: everything but the value."""

    broker_id: int
    kind: str
    hint: str
    version: int
    updated_at: datetime
    updated_by: int | None


def put(cur: psycopg2.extensions.cursor, keys: MasterKeys, broker_id: int, kind: str, value: str,
        user_id: int | None) -> StoredInfo:
    """Store (or replace) one credential, checked and sealed; in the caller's transaction."""
    value = check_value(kind, value)
    sealed = seal(keys, broker_id, kind, value)
    cur.execute(
        """
        INSERT INTO leadflow.broker_credentials AS c (broker_id, kind, key_id, wrapped_key, ciphertext, hint,
                                                      updated_by)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (broker_id, kind) DO UPDATE SET key_id = EXCLUDED.key_id, wrapped_key = EXCLUDED.wrapped_key,
            ciphertext = EXCLUDED.ciphertext, hint = EXCLUDED.hint, updated_by = EXCLUDED.updated_by,
            version = c.version + 1, updated_at = clock_timestamp()
        RETURNING broker_id, kind, hint, version, updated_at, updated_by
        """,
        (broker_id, kind, sealed.key_id, sealed.wrapped_key, sealed.ciphertext, hint(kind, value), user_id))
    row = cur.fetchone()
    assert row is not None
    return StoredInfo(*row)


def remove(cur: psycopg2.extensions.cursor, broker_id: int, kind: str) -> bool:
    """Forget a stored credential (the environment variable, if any, applies again)."""
    cur.execute("DELETE FROM leadflow.broker_credentials WHERE broker_id = %s AND kind = %s", (broker_id, kind))
    return cur.rowcount > 0


def infos(cur: psycopg2.extensions.cursor, broker_id: int) -> dict[str, StoredInfo]:
    cur.execute("""SELECT broker_id, kind, hint, version, updated_at, updated_by FROM leadflow.broker_credentials
                   WHERE broker_id = %s""", (broker_id,))
    return {row[1]: StoredInfo(*row) for row in cur.fetchall()}


def read_all(cur: psycopg2.extensions.cursor, keys: MasterKeys,
             broker_ids: Iterable[int] | None = None) -> dict[int, dict[str, str]]:
    """Every stored value, opened: broker id → kind → value. A row that does not open (another master key,
    an altered value) is ``UNREADABLE`` and logged: its channel answers as unconfigured, rather than failing
    every broker's webhooks or falling back to an environment variable the stored value replaced."""
    ids = None if broker_ids is None else list(broker_ids)
    cur.execute("""SELECT broker_id, kind, key_id, wrapped_key, ciphertext FROM leadflow.broker_credentials
                   WHERE %s::bigint[] IS NULL OR broker_id = ANY(%s::bigint[])""", (ids, ids))
    found: dict[int, dict[str, str]] = {}
    for broker_id, kind, kid, wrapped, ciphertext in cur.fetchall():
        try:
            found.setdefault(int(broker_id), {})[kind] = unseal(
                keys, int(broker_id), kind, Sealed(kid, bytes(wrapped), bytes(ciphertext)))
        except CredentialError as exc:
            log.warning("stored credential not opened (broker %s, %s): %s", broker_id, kind, exc)
            found.setdefault(int(broker_id), {})[kind] = UNREADABLE
    return found


def fingerprint(cur: psycopg2.extensions.cursor) -> tuple[object, ...]:
    """Changes whenever a broker or a credential is added, changed or removed: what a cache compares."""
    # A digest of every row's identity and version rather than a max(updated_at): a transaction that stamped
    # its rows earlier but committed later would not move a maximum. Both tables are small (a row per broker
    # and credential), so this costs well under a millisecond at hundreds of brokers.
    cur.execute("""SELECT (SELECT count(*) FROM leadflow.broker_credentials),
                          (SELECT md5(string_agg(concat_ws(':', broker_id, kind, version, key_id, updated_at), ','
                                                 ORDER BY broker_id, kind))
                           FROM leadflow.broker_credentials),
                          (SELECT md5(string_agg(b::text, ',' ORDER BY broker_id)) FROM leadflow.brokers b)""")
    row = cur.fetchone()
    assert row is not None
    return tuple(row)


@dataclass(frozen=True)
class Rotation:
    resealed: int
    already_current: int
    key_id: str
    # Rows no configured key opens (broker id, kind): left as they are, and named so someone looks.
    unreadable: list[tuple[int, str]] = field(default_factory=list)


def rotate(url: str, keys: MasterKeys, batch: int = 500) -> Rotation:
    """Re-seal every row not under the current master key, each with a new data key; in batches, each row
    locked while it is re-sealed. Readers keep working throughout: they hold every configured key."""
    resealed, unreadable = 0, []
    after: tuple[int, str] = (0, "")
    while True:
        with transaction(url) as conn, conn.cursor() as cur:
            cur.execute("""SELECT broker_id, kind, key_id, wrapped_key, ciphertext FROM leadflow.broker_credentials
                           WHERE key_id <> %s AND (broker_id, kind) > (%s, %s)
                           ORDER BY broker_id, kind LIMIT %s FOR UPDATE""",
                        (keys.current_id, after[0], after[1], batch))
            rows = cur.fetchall()
            for broker_id, kind, kid, wrapped, ciphertext in rows:
                after = (int(broker_id), str(kind))
                try:
                    value = unseal(keys, int(broker_id), kind, Sealed(kid, bytes(wrapped), bytes(ciphertext)))
                except CredentialError:
                    unreadable.append(after)
                    continue
                sealed = seal(keys, int(broker_id), kind, value)
                cur.execute("""UPDATE leadflow.broker_credentials SET key_id = %s, wrapped_key = %s, ciphertext = %s,
                                   updated_at = clock_timestamp()
                               WHERE broker_id = %s AND kind = %s""",
                            (sealed.key_id, sealed.wrapped_key, sealed.ciphertext, broker_id, kind))
                resealed += 1
        if len(rows) < batch:
            break
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM leadflow.broker_credentials WHERE key_id = %s", (keys.current_id,))
        row = cur.fetchone()
    return Rotation(resealed, int(row[0]) - resealed if row else 0, keys.current_id, unreadable)


def import_environment(url: str, keys: MasterKeys, slugs: Iterable[str] | None = None,
                       environ_get: Callable[[str], str | None] = secret) -> list[tuple[str, str]]:
    """The migration path of an install whose secrets are environment variables: store every credential a
    broker has in the environment and not yet in the table (a stored one is never overwritten). Returns the
    (slug, kind) pairs stored; the variables can be removed once every process has refreshed. A variable
    whose value does not pass the form's check is stored all the same: it is what the install runs on."""
    wanted = None if slugs is None else set(slugs)
    done: list[tuple[str, str]] = []
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT broker_id, slug, secret_env FROM leadflow.brokers ORDER BY slug")
        for broker_id, slug, secret_env in cur.fetchall():
            if wanted is not None and slug not in wanted:
                continue
            names = secret_env if isinstance(secret_env, dict) else {}
            stored = infos(cur, int(broker_id))
            for kind in KINDS:
                value = environ_get(names.get(kind) or environment_name(slug, kind))
                if not value or kind in stored:
                    continue
                sealed = seal(keys, int(broker_id), kind, value)
                cur.execute("""INSERT INTO leadflow.broker_credentials (broker_id, kind, key_id, wrapped_key,
                                   ciphertext, hint) VALUES (%s, %s, %s, %s, %s, %s)""",
                            (broker_id, kind, sealed.key_id, sealed.wrapped_key, sealed.ciphertext, hint(kind, value)))
                done.append((str(slug), kind))
    return done


# --- readers ------------------------------------------------------------------------------------------

class CredentialSource(Protocol):
    def get(self, slug: str, kind: str) -> str | None: ...


def environment_name(slug: str, kind: str) -> str:
    """``acme-propiedades`` + ``telegram_bot_token`` → ``LEADFLOW_ACME_PROPIEDADES_TELEGRAM_BOT_TOKEN``."""
    return f"LEADFLOW_{slug.upper().replace('-', '_')}_{kind.upper()}"


class EnvironmentCredentials:
    """The environment variables alone: what installs used before credentials were stored."""

    def get(self, slug: str, kind: str) -> str | None:
        return secret(environment_name(slug, kind))


class StoredCredentials:
    """Stored values first, then the environment; refreshed when older than ``refresh_s`` (a query that reads
    a fingerprint, and a reload when it changed). For threaded callers: the dispatcher, the agent, the
    reports API. A database that does not answer keeps the last values in use."""

    def __init__(self, url: str, keys: MasterKeys | Callable[[], MasterKeys], refresh_s: float = 2.0) -> None:
        self._url = url
        self._keys = keys
        self.refresh_s = refresh_s
        self._by_slug: dict[str, dict[str, str]] = {}
        self._fingerprint: tuple[object, ...] | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> StoredCredentials:
        return cls(settings.database_url, lambda: MasterKeys.from_settings(settings),
                   settings.credentials_refresh_s)

    def keys(self) -> MasterKeys:
        if callable(self._keys):
            self._keys = self._keys()  # resolved on first use: a process with nothing stored needs no key
        return self._keys

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._checked_at < self.refresh_s:
                return
            self._checked_at = time.monotonic()
            try:
                with transaction(self._url) as conn, conn.cursor() as cur:
                    now = fingerprint(cur)
                    if now == self._fingerprint and not force:
                        return
                    self._by_slug = by_slug(cur, self.keys() if now[0] else None)
                    self._fingerprint = now
            except (psycopg2.Error, ConfigurationError) as exc:
                # PostgreSQL away (connect() says so with a ConfigurationError), or a master key that does not
                # load: the values already read keep serving; the next call tries again.
                log.warning("channel credentials not refreshed: %s", str(exc).splitlines()[0])
                return

    def get(self, slug: str, kind: str) -> str | None:
        self.refresh()
        stored = self._by_slug.get(slug, {}).get(kind)
        if stored is not None:
            return stored or None  # UNREADABLE: not configured, and not the environment's either
        return secret(environment_name(slug, kind))


def by_slug(cur: psycopg2.extensions.cursor, keys: MasterKeys | None) -> dict[str, dict[str, str]]:
    """Every broker's stored values by its slug (none when ``keys`` is None: nothing is stored)."""
    if keys is None:
        return {}
    opened = read_all(cur, keys)
    cur.execute("SELECT broker_id, slug FROM leadflow.brokers WHERE broker_id = ANY(%s)", (list(opened),))
    return {slug: opened[int(broker_id)] for broker_id, slug in cur.fetchall()}
