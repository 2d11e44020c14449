"""Tokens, the login limit and passwords, without services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
import pytest

from leadflow.config import Settings
from leadflow.users import User, UserError, hash_password, password_matches
from reports_api.security import InvalidToken, LoginLimiter, TokenSettings, issue_token, read_token

ADMIN = User(7, 3, "ana@andes.test", "Ana", "ADMIN")


def test_a_token_carries_the_user_and_expires() -> None:
    tokens = TokenSettings("s" * 40, timedelta(minutes=5))
    principal = read_token(tokens, issue_token(tokens, ADMIN))
    assert (principal.user_id, principal.role, principal.broker_id) == (7, "ADMIN", 3)
    assert principal.may_read(3) and not principal.may_read(4)
    with pytest.raises(InvalidToken, match="expired"):
        read_token(tokens, issue_token(tokens, ADMIN, now=datetime.now(UTC) - timedelta(minutes=6)))
    with pytest.raises(InvalidToken):
        read_token(TokenSettings("t" * 40, timedelta(minutes=5)), issue_token(tokens, ADMIN))


def test_a_token_names_the_account_version_and_its_own_session() -> None:
    tokens = TokenSettings("s" * 40, timedelta(minutes=5))
    ana = User(7, 3, "ana@andes.test", "Ana", "ADMIN", token_version=4)
    first, second = (read_token(tokens, issue_token(tokens, ana)) for _ in range(2))
    assert first.token_version == second.token_version == 4
    assert first.session_id and first.session_id != second.session_id
    assert first.expires_at == pytest.approx(datetime.now(UTC).timestamp() + 300, abs=5)
    # A token from before versions and sessions (or one without them) cannot be checked, so it is refused.
    for missing in ("ver", "jti"):
        claims = {"sub": "7", "email": ana.email, "role": "ADMIN", "broker_id": 3, "ver": 4, "jti": "x",
                  "iss": "leadflow-reports", "iat": datetime.now(UTC), "exp": datetime.now(UTC) + timedelta(minutes=5)}
        del claims[missing]
        with pytest.raises(InvalidToken):
            read_token(tokens, jwt.encode(claims, tokens.secret, algorithm="HS256"))


def test_a_short_jwt_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow.config import ConfigurationError

    monkeypatch.setenv("LEADFLOW_REPORTS_JWT_SECRET", "short")
    with pytest.raises(ConfigurationError, match="at least 32"):
        TokenSettings.from_settings(Settings.from_environment())


def test_the_login_limit_counts_per_address_and_email_failures_and_forgets() -> None:
    limiter = LoginLimiter(attempts=2, window_s=60)
    assert limiter.check("a", "x", now=0) == 0
    assert limiter.check("b", "x", now=1) == 0
    # Two failures of the email: the third attempt waits window / attempts after the last one.
    assert limiter.check("c", "x", now=2) == pytest.approx(30 - 1)
    assert limiter.check("a", "y", now=3) == 0  # the address has one attempt left
    assert limiter.check("a", "z", now=4) == pytest.approx(56)  # spent, whatever the email
    assert limiter.check("c", "x", now=31) == 0  # the email's delay is over


def test_the_stand_in_hash_for_unknown_emails_costs_the_configured_work_factor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    for rounds in ("5", "6"):
        monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", rounds)
        assert not password_matches("no account has this password", None)
        # $2b$<cost>$<salt and hash>: the cost of an unknown email's check is the cost of a real one.
        assert int(checked[-1].split(b"$")[2]) == Settings.from_environment().bcrypt_rounds == int(rounds)
        assert checked[-1].startswith(hash_password("a long enough password").encode()[:7])


def test_passwords_are_bcrypt_hashed_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
    hashed = hash_password("una clave bastante larga")
    assert hashed.startswith("$2b$04$") and "larga" not in hashed
    assert password_matches("una clave bastante larga", hashed)
    assert not password_matches("otra clave bastante larga", hashed)
    assert not password_matches("anything", None)
    with pytest.raises(UserError, match="at least 10"):
        hash_password("corta")
    with pytest.raises(UserError, match="72 bytes"):
        hash_password("ñ" * 40)
