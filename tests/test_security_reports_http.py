"""What the reports API shows before and after login (issue 17, findings 2, 9, 10 and 15), without services:
the dbt docs behind a session, the session cookie's Secure flag, 422s that do not echo the input, and an
ended session refused everywhere (the accounts database replaced by a stand-in)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadflow.users import User
from reports_api import security
from reports_api.app import create_app
from reports_api.dashboard import COOKIE
from reports_api.security import LoginLimiter, Principal, TokenSettings, issue_token

TOKENS = TokenSettings("s" * 40, timedelta(minutes=5))
ANA = User(7, 3, "ana@andes.test", "Ana", "ADMIN")
RIGHT = "the right password"
NOWHERE = "postgresql://nobody@127.0.0.1:1/none"
SITE = {"index.html": "<html>dbt docs</html>", "manifest.json": '{"nodes": {}}', "catalog.json": '{"nodes": {}}'}
# What `dbt docs generate` leaves beside the site: run details and the server's absolute paths.
PRIVATE = {"run_results.json": '{"args": {"project_dir": "/app/dbt_project"}}',
           "partial_parse.msgpack": "/app/dbt_project/models", "graph.gpickle": "/app/dbt_project",
           "semantic_manifest.json": "{}"}


class Accounts:
    """Every session stands until it is ended here; the login limit is this process's."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.checked: list[int] = []

    def confirm(self, principal: Principal) -> bool:
        self.checked.append(principal.user_id)
        return principal.session_id not in self.ended

    def end_session(self, principal: Principal) -> None:
        self.ended.add(principal.session_id)

    def login_limiter(self, attempts: int, window_s: float) -> LoginLimiter:
        return LoginLimiter(attempts, window_s)

    def close(self) -> None:
        pass


def app(**options: object) -> TestClient:
    api = create_app(NOWHERE, TOKENS, accounts=Accounts(), **options)  # type: ignore[arg-type]
    api.state.pool = None  # no lifespan (it would connect); no page here gets as far as reading
    return TestClient(api, follow_redirects=False)


@pytest.fixture(autouse=True)
def ana_is_the_one_account(monkeypatch: pytest.MonkeyPatch) -> None:
    def authenticate(url: str, email: str, password: str) -> User | None:
        return ANA if email == ANA.email and password == RIGHT else None

    monkeypatch.setattr(security, "authenticate", authenticate)


@pytest.fixture
def docs(tmp_path: Path) -> TestClient:
    for name, text in {**SITE, **PRIVATE}.items():
        (tmp_path / name).write_text(text)
    return app(docs_dir=tmp_path)


def test_the_dbt_docs_need_a_session_or_a_bearer_token(docs: TestClient) -> None:
    for name in ("", *SITE, *PRIVATE):
        answer = docs.get(f"/dbt-docs/{name}")
        assert answer.status_code == 401, name
        assert "dbt" not in answer.text.replace("dbt-docs", "") and "/app/" not in answer.text
    forged = docs.get("/dbt-docs/manifest.json", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 401
    # A person in a browser is sent to the login that sets the cookie.
    browser = docs.get("/dbt-docs/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status_code == 303 and browser.headers["location"] == "/dashboard/login"


def test_with_a_session_the_dbt_docs_serve_the_site_files_only(docs: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {issue_token(TOKENS, ANA)}"}
    for name, text in SITE.items():
        answer = docs.get(f"/dbt-docs/{name}", headers=bearer)
        assert answer.status_code == 200 and answer.text == text, name
        assert "private" in answer.headers["cache-control"]
    assert docs.get("/dbt-docs/", headers=bearer).text == SITE["index.html"]
    for name in (*PRIVATE, "..%2Fdbt_project.yml", "missing.json"):
        answer = docs.get(f"/dbt-docs/{name}", headers=bearer)
        assert answer.status_code == 404 and "/app/" not in answer.text, name
    # The dashboard's session cookie is as good as the bearer token.
    docs.cookies.set(COOKIE, issue_token(TOKENS, ANA))
    assert docs.get("/dbt-docs/catalog.json").json() == {"nodes": {}}
    assert docs.get("/dbt-docs/run_results.json").status_code == 404


def test_before_the_first_docs_run_a_session_gets_404(tmp_path: Path) -> None:
    api = app(docs_dir=tmp_path / "not-yet")
    answer = api.get("/dbt-docs/", headers={"Authorization": f"Bearer {issue_token(TOKENS, ANA)}"})
    assert answer.status_code == 404 and "not been generated" in answer.json()["detail"]


def session_cookie(monkeypatch: pytest.MonkeyPatch, host: str, secure: str | None,
                   headers: dict[str, str] | None = None, peer: str = "198.51.100.7") -> str:
    """The Set-Cookie of a dashboard login to an app configured with these settings, over plain http."""
    monkeypatch.setenv("LEADFLOW_REPORTS_HOST", host)
    if secure is None:
        monkeypatch.delenv("LEADFLOW_COOKIE_SECURE", raising=False)
    else:
        monkeypatch.setenv("LEADFLOW_COOKIE_SECURE", secure)
    api = TestClient(create_app(NOWHERE, TOKENS, accounts=Accounts()), follow_redirects=False, client=(peer, 40000))
    answer = api.post("/dashboard/login", content=f"email={ANA.email}&password={RIGHT.replace(' ', '+')}",
                      headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    return cookie


@pytest.mark.parametrize(("host", "setting", "secure"), [
    ("0.0.0.0", None, True),  # listening beyond this machine: Secure, even though this process sees http
    ("reports.internal", None, True),
    ("127.0.0.1", None, False),  # `make up`: the browser is on this machine, over plain http
    ("::1", None, False),
    ("localhost", None, False),
    ("127.0.0.1", "true", True),
    ("0.0.0.0", "false", False),
])
def test_the_session_cookie_is_secure_by_setting_not_by_the_scheme_this_process_sees(
        monkeypatch: pytest.MonkeyPatch, host: str, setting: str | None, secure: bool) -> None:
    assert ("; Secure" in session_cookie(monkeypatch, host, setting)) is secure


def test_where_the_server_really_listens_decides_the_cookie_when_it_is_not_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_REPORTS_HOST", "127.0.0.1")
    monkeypatch.delenv("LEADFLOW_COOKIE_SECURE", raising=False)
    # `leadflow reports-api --host 0.0.0.0` passes its --host here.
    assert create_app(NOWHERE, TOKENS, bind_host="0.0.0.0").state.cookie_secure is True
    assert create_app(NOWHERE, TOKENS, bind_host="127.0.0.1").state.cookie_secure is False
    assert create_app(NOWHERE, TOKENS).state.cookie_secure is False


def test_https_seen_by_a_trusted_proxy_makes_the_cookie_secure_even_when_the_setting_is_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_TRUSTED_PROXIES", "10.0.0.0/8")
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.9"}
    assert "; Secure" in session_cookie(monkeypatch, "0.0.0.0", "false", https, peer="10.0.0.2")
    # The same header from anyone else is not believed.
    assert "; Secure" not in session_cookie(monkeypatch, "0.0.0.0", "false", https, peer="198.51.100.7")


def test_a_lone_surrogate_in_the_login_gets_a_422_that_does_not_echo_the_input() -> None:
    api = TestClient(create_app(NOWHERE, TOKENS, accounts=Accounts()), raise_server_exceptions=False)
    for body in ('{"email": "\\ud800", "password": "hunter2-secret"}',
                 '{"email": "ana\\ud800@andes.test", "password": "hunter2-secret"}',
                 '{"email": "ana@andes.test", "password": "\\udfff hunter2-secret"}'):
        answer = api.post("/auth/token", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, body
        problems = answer.json()["detail"]
        assert problems and all("input" not in problem and problem["loc"][0] == "body" for problem in problems)
        assert "hunter2" not in answer.text and "ana" not in answer.text


def test_validation_errors_name_the_field_but_never_echo_what_was_sent() -> None:
    api = app()
    answer = api.post("/auth/token", json={"email": "x" * 400, "password": "hunter2-secret" * 100})
    assert answer.status_code == 422
    assert {tuple(problem["loc"]) for problem in answer.json()["detail"]} == {("body", "email"), ("body", "password")}
    assert "xxxx" not in answer.text and "hunter2" not in answer.text
    broken = api.post("/auth/token", content='{"email": "hunter2', headers={"Content-Type": "application/json"})
    assert broken.status_code == 422 and "hunter2" not in broken.text


def test_an_ended_session_is_refused_by_every_route_that_takes_a_token(tmp_path: Path) -> None:
    for name, text in SITE.items():
        (tmp_path / name).write_text(text)
    api = app(docs_dir=tmp_path)
    accounts: Accounts = api.app.state.accounts  # type: ignore[attr-defined]
    token = issue_token(TOKENS, ANA)
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/me", headers=bearer).status_code == 200
    assert api.get("/dbt-docs/catalog.json", headers=bearer).status_code == 200
    assert accounts.checked == [ANA.user_id] * 2  # a genuine signature alone is not enough
    accounts.end_session(Principal(ANA.user_id, ANA.email, ANA.role, ANA.broker_id, session_id=_jti(token)))
    for path in ("/me", "/dbt-docs/catalog.json", "/brokers"):
        answer = api.get(path, headers=bearer)
        assert answer.status_code == 401 and answer.json() == {"detail": "this session has ended; log in again"}
    # The same token as the dashboard's cookie: dropped, so the pages ask for a login.
    api.cookies.set(COOKIE, token)
    assert api.get("/dashboard").headers["location"] == "/dashboard/login"
    assert api.get("/dbt-docs/catalog.json").status_code == 401
    # Another session of the same person is untouched.
    assert api.get("/me", headers={"Authorization": f"Bearer {issue_token(TOKENS, ANA)}"}).status_code == 200


def test_dashboard_logout_ends_the_session_not_only_the_cookie() -> None:
    api = app()
    login = api.post("/dashboard/login", content=f"email={ANA.email}&password={RIGHT.replace(' ', '+')}",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    token = login.cookies[COOKIE]
    api.cookies.set(COOKIE, token)
    out = api.post("/dashboard/logout")
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert api.app.state.accounts.ended == {_jti(token)}  # type: ignore[attr-defined]
    # A copy of the cookie kept from before the logout is worth nothing.
    copy = TestClient(api.app, follow_redirects=False)
    copy.cookies.set(COOKIE, token)
    assert copy.get("/dashboard").headers["location"] == "/dashboard/login"
    assert copy.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def _jti(token: str) -> str:
    from reports_api.security import read_token

    return read_token(TOKENS, token).session_id
