"""Broker self-service's JSON API against a running app on real PostgreSQL (issue 14): a SUPERADMIN registers
brokers with their first ADMIN, an ADMIN invites, changes and deactivates its people, invitation links work once
and expire, and every admin write is audited without secrets. These routes write as the database owner, so each
refusal (another broker, SUPERADMIN granted, an AGENT, the last admin) is tested here: no policy stands behind it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadflow.config import Settings
from leadflow.db.connection import transaction
from leadflow.users import add_user
from reports_api.app import create_app
from reports_api.security import LoginLimiter, TokenSettings
from tests.test_leads_pipeline import rows

TOKENS = TokenSettings("a" * 40, timedelta(minutes=30))
PASSWORD = "una-clave-larga-de-prueba"
Headers = dict[str, str]


@dataclass
class Admin:
    broker_id: int
    email: str
    user_id: int
    headers: Headers


@pytest.fixture(scope="module")
def cheap_hashes() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_BCRYPT_ROUNDS", "4")
        yield


@pytest.fixture(scope="module")
def api(settings: Settings, cheap_hashes: None) -> Iterator[TestClient]:
    # The default session cache (2 s): "at once" must hold with it, not only without it.
    app = create_app(settings.database_url, TOKENS, limiter=LoginLimiter(attempts=1000))
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def root(settings: Settings, api: TestClient) -> Headers:
    user = add_user(settings.database_url, f"root-{uuid.uuid4().hex[:8]}@admin.test", PASSWORD, role="SUPERADMIN")
    return login(api, user.email)


def login(api: TestClient, email: str, password: str = PASSWORD) -> Headers:
    answer = api.post("/auth/token", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def login_fails(api: TestClient, email: str, password: str = PASSWORD) -> bool:
    return api.post("/auth/token", json={"email": email, "password": password}).status_code == 401


def token_of(url: str) -> str:
    assert "/dashboard/invite/" in url
    return url.rsplit("/", 1)[1]


def accept(api: TestClient, url: str, password: str = PASSWORD) -> int:
    return api.post("/admin/invitations/accept", json={"token": token_of(url), "password": password}).status_code


def new_broker(api: TestClient, root: Headers, **overrides: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    body = {"slug": f"corredora-{tag}", "name": "Corredora Sur", "country": "CL", "timezone": "America/Santiago",
            "admin_email": f"jefa-{tag}@sur.test", "admin_display_name": "Jefa Sur", **overrides}
    answer = api.post("/admin/brokers", json=body, headers=root)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def broker_with_admin(api: TestClient, root: Headers) -> Admin:
    created = new_broker(api, root)
    assert accept(api, created["admin"]["invitation_url"]) == 200
    email = created["admin"]["person"]["email"]
    return Admin(created["broker"]["broker_id"], email, created["admin"]["person"]["user_id"], login(api, email))


def invite(api: TestClient, admin: Admin, role: str = "AGENT", email: str | None = None) -> dict[str, Any]:
    email = email or f"{role.lower()}-{uuid.uuid4().hex[:8]}@sur.test"
    answer = api.post(f"/admin/brokers/{admin.broker_id}/users", headers=admin.headers,
                      json={"email": email, "display_name": f"Persona {role}", "role": role})
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


def invited_person(api: TestClient, admin: Admin, role: str = "AGENT") -> tuple[int, str, Headers]:
    """A person of the admin's broker who accepted the invitation and logged in: (user id, email, headers)."""
    found = invite(api, admin, role)
    assert accept(api, found["invitation_url"]) == 200
    email = found["person"]["email"]
    return found["person"]["user_id"], email, login(api, email)


@pytest.fixture(scope="module")
def a(api: TestClient, root: Headers) -> Admin:
    return broker_with_admin(api, root)


@pytest.fixture(scope="module")
def b(api: TestClient, root: Headers) -> Admin:
    return broker_with_admin(api, root)


def audit_of(api: TestClient, headers: Headers, broker_id: int, **params: int) -> dict[str, Any]:
    answer = api.get(f"/admin/brokers/{broker_id}/audit", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_superadmin_registers_a_broker_whose_admin_sets_a_password_with_a_link_that_works_once(
        api: TestClient, root: Headers, settings: Settings) -> None:
    created = new_broker(api, root, country="mx", timezone="America/Mexico_City")
    broker, admin = created["broker"], created["admin"]
    assert broker["country"] == "MX" and broker["timezone"] == "America/Mexico_City"
    assert admin["person"]["role"] == "ADMIN" and admin["person"]["invitation_pending"]
    assert admin["invitation_url"].startswith("http://testserver/dashboard/invite/")
    listed = {b["slug"]: b for b in api.get("/admin/brokers", headers=root).json()}
    assert listed[broker["slug"]]["active_people"] == 1

    email = admin["person"]["email"]
    assert login_fails(api, email) and login_fails(api, email, "!invited")  # no password yet: nothing logs in
    # Only the token's hash is kept.
    [(stored,)] = rows(settings, "SELECT token_sha256 FROM leadflow.user_invitations WHERE user_id = %s",
                       admin["person"]["user_id"])
    assert token_of(admin["invitation_url"]).encode() not in bytes(stored)
    short = api.post("/admin/invitations/accept", json={"token": token_of(admin["invitation_url"]),
                                                        "password": "corta"})
    assert short.status_code == 422 and short.json()["detail"].startswith("password:")
    assert accept(api, admin["invitation_url"]) == 200
    headers = login(api, email)
    assert api.get("/me", headers=headers).json()["broker_id"] == broker["broker_id"]
    assert accept(api, admin["invitation_url"], "otra-clave-larga-123") == 404  # used up
    assert login_fails(api, email, "otra-clave-larga-123")

    people = api.get(f"/admin/brokers/{broker['broker_id']}/users", headers=headers).json()
    assert [(p["email"], p["role"], p["invitation_pending"]) for p in people] == [(email, "ADMIN", False)]
    actions = [e["action"] for e in audit_of(api, headers, broker["broker_id"])["entries"]]
    assert actions == ["user.invitation_accepted", "user.invite", "broker.create"]


def test_an_invitation_expires_and_a_new_one_replaces_the_old(api: TestClient, a: Admin, settings: Settings) -> None:
    found = invite(api, a)
    user_id = found["person"]["user_id"]
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE leadflow.user_invitations SET expires_at = now() - interval '1 second' "
                    "WHERE user_id = %s", (user_id,))
    assert accept(api, found["invitation_url"]) == 404
    again = api.post(f"/admin/brokers/{a.broker_id}/users/{user_id}/invitation", headers=a.headers)
    assert again.status_code == 201
    renewed = invite(api, a)
    first = renewed["invitation_url"]
    second = api.post(f"/admin/brokers/{a.broker_id}/users/{renewed['person']['user_id']}/invitation",
                      headers=a.headers).json()["invitation_url"]
    assert accept(api, first) == 404  # replaced
    assert accept(api, second) == 200
    assert accept(api, again.json()["invitation_url"]) == 200
    # Someone who has a password gets no new link.
    assert api.post(f"/admin/brokers/{a.broker_id}/users/{user_id}/invitation",
                    headers=a.headers).status_code == 409


def test_an_admin_changes_a_role_and_deactivates_and_the_persons_token_stops_at_once(
        api: TestClient, a: Admin) -> None:
    user_id, email, headers = invited_person(api, a)
    assert api.get("/me", headers=headers).status_code == 200  # its session answer is now cached
    promoted = api.patch(f"/admin/brokers/{a.broker_id}/users/{user_id}", headers=a.headers,
                         json={"role": "ADMIN", "display_name": "Agente Ascendido"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "ADMIN"
    assert api.get("/me", headers=headers).status_code == 401  # a new role: a new login
    headers = login(api, email)
    assert api.get("/me", headers=headers).status_code == 200
    off = api.patch(f"/admin/brokers/{a.broker_id}/users/{user_id}", headers=a.headers, json={"disabled": True})
    assert off.status_code == 200 and off.json()["disabled"]
    gone = api.get("/me", headers=headers)
    assert gone.status_code == 401 and gone.json() == {"detail": "this session has ended; log in again"}
    assert login_fails(api, email)
    on = api.patch(f"/admin/brokers/{a.broker_id}/users/{user_id}", headers=a.headers, json={"disabled": False})
    assert on.status_code == 200
    assert api.get("/me", headers=headers).status_code == 401  # ended for good
    assert api.get("/me", headers=login(api, email)).status_code == 200
    entries = audit_of(api, a.headers, a.broker_id, limit=3)["entries"]
    assert [(e["action"], e["before"]["disabled"], e["after"]["disabled"]) for e in entries[:2]] == [
        ("user.update", True, False), ("user.update", False, True)]
    assert entries[0]["user_email"] == a.email and entries[0]["after"]["user_id"] == user_id
    assert entries[2]["before"] == {"user_id": user_id, "email": email, "display_name": "Persona AGENT",
                                    "role": "AGENT", "disabled": False}
    assert entries[2]["after"]["role"] == "ADMIN" and entries[2]["after"]["display_name"] == "Agente Ascendido"


def test_an_admin_may_not_act_on_another_broker(api: TestClient, a: Admin, b: Admin) -> None:
    b_agent = invite(api, b)["person"]["user_id"]
    base = f"/admin/brokers/{b.broker_id}"
    refused = [
        api.get(f"{base}/users", headers=a.headers),
        api.post(f"{base}/users", headers=a.headers,
                 json={"email": f"x-{uuid.uuid4().hex[:6]}@sur.test", "display_name": "X", "role": "AGENT"}),
        api.patch(f"{base}/users/{b_agent}", headers=a.headers, json={"disabled": True}),
        api.post(f"{base}/users/{b_agent}/invitation", headers=a.headers),
        api.get(f"{base}/audit", headers=a.headers),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert refused[0].json() == {"detail": "this account may not manage that broker"}
    # Nor through its own broker's path: B's person is not one of A's.
    assert api.patch(f"/admin/brokers/{a.broker_id}/users/{b_agent}", headers=a.headers,
                     json={"disabled": True}).status_code == 404
    [person] = [p for p in api.get(f"{base}/users", headers=b.headers).json() if p["user_id"] == b_agent]
    assert not person["disabled"]
    # Nor move a person to its broker: the body has no such field.
    assert api.patch(f"/admin/brokers/{a.broker_id}/users/{a.user_id}", headers=a.headers,
                     json={"broker_id": b.broker_id}).status_code == 422


def test_an_admin_may_not_grant_superadmin_touch_a_superadmin_or_register_brokers(
        api: TestClient, a: Admin, settings: Settings) -> None:
    base = f"/admin/brokers/{a.broker_id}/users"
    grant = api.post(base, headers=a.headers, json={"email": f"s-{uuid.uuid4().hex[:6]}@sur.test",
                                                    "display_name": "S", "role": "SUPERADMIN"})
    assert grant.status_code == 422 and grant.json()["detail"][0]["loc"] == ["body", "role"]
    selfish = api.patch(f"{base}/{a.user_id}", headers=a.headers, json={"role": "SUPERADMIN"})
    assert selfish.status_code == 422 and selfish.json()["detail"][0]["loc"] == ["body", "role"]
    root_user = add_user(settings.database_url, f"root2-{uuid.uuid4().hex[:8]}@admin.test", PASSWORD,
                         role="SUPERADMIN")
    touched = api.patch(f"{base}/{root_user.user_id}", headers=a.headers, json={"disabled": True})
    assert touched.status_code == 403 and "SUPERADMIN" in touched.json()["detail"]
    assert api.get("/me", headers=login(api, root_user.email)).json()["role"] == "SUPERADMIN"
    assert api.get("/admin/brokers", headers=a.headers).status_code == 403
    assert api.post("/admin/brokers", headers=a.headers, json={
        "slug": f"mia-{uuid.uuid4().hex[:6]}", "name": "Mía", "country": "CL", "timezone": "America/Santiago",
        "admin_email": f"m-{uuid.uuid4().hex[:6]}@sur.test", "admin_display_name": "M"}).status_code == 403


def test_an_agent_may_call_no_admin_route(api: TestClient, a: Admin, root: Headers) -> None:
    agent_id, _, agent = invited_person(api, a)
    base = f"/admin/brokers/{a.broker_id}"
    answers = [
        api.get("/admin/brokers", headers=agent),
        api.post("/admin/brokers", headers=agent, json={
            "slug": f"ag-{uuid.uuid4().hex[:6]}", "name": "Ag", "country": "CL", "timezone": "America/Santiago",
            "admin_email": f"ag-{uuid.uuid4().hex[:6]}@sur.test", "admin_display_name": "Ag"}),
        api.get(f"{base}/users", headers=agent),
        api.post(f"{base}/users", headers=agent,
                 json={"email": f"y-{uuid.uuid4().hex[:6]}@sur.test", "display_name": "Y", "role": "ADMIN"}),
        api.patch(f"{base}/users/{agent_id}", headers=agent, json={"role": "ADMIN"}),
        api.post(f"{base}/users/{agent_id}/invitation", headers=agent),
        api.get(f"{base}/audit", headers=agent),
    ]
    assert [r.status_code for r in answers] == [403] * 7
    assert api.get("/me", headers=agent).json()["role"] == "AGENT"
    assert api.get(f"{base}/users").status_code == 401  # and nobody without a token


def test_the_last_active_admin_may_not_demote_or_deactivate_themselves(api: TestClient, root: Headers) -> None:
    admin = broker_with_admin(api, root)
    me = f"/admin/brokers/{admin.broker_id}/users/{admin.user_id}"
    invite(api, admin, "ADMIN")  # invited, no password yet: cannot log in, so it does not count
    for change in ({"role": "AGENT"}, {"disabled": True}):
        refused = api.patch(me, headers=admin.headers, json=change)
        assert refused.status_code == 409, change
        assert "last active ADMIN" in refused.json()["detail"]
    assert api.get("/me", headers=admin.headers).json()["role"] == "ADMIN"
    # With a second admin who can log in, stepping down is allowed (and ends the session).
    invited_person(api, admin, "ADMIN")
    assert api.patch(me, headers=admin.headers, json={"role": "AGENT"}).status_code == 200
    assert api.get("/me", headers=admin.headers).status_code == 401
    # A SUPERADMIN may leave a broker without an admin (to lock it out).
    second = [p for p in api.get(f"/admin/brokers/{admin.broker_id}/users", headers=root).json()
              if p["role"] == "ADMIN" and not p["invitation_pending"]]
    assert api.patch(f"/admin/brokers/{admin.broker_id}/users/{second[0]['user_id']}", headers=root,
                     json={"disabled": True}).status_code == 200


@pytest.mark.parametrize(("field", "value"), [
    ("slug", "Mala Slug!"), ("slug", "-x"), ("country", "ZZ"), ("country", "Chile"),
    ("timezone", "Mars/Olympus"), ("timezone", "../etc"), ("admin_email", "no-es-correo"),
    ("name", "  "), ("admin_display_name", "dos\nlíneas"),
])
def test_a_broker_with_a_bad_field_is_refused_naming_the_field(api: TestClient, root: Headers, settings: Settings,
                                                               field: str, value: str) -> None:
    tag = uuid.uuid4().hex[:8]
    body = {"slug": f"ok-{tag}", "name": "Bien", "country": "CL", "timezone": "America/Santiago",
            "admin_email": f"ok-{tag}@sur.test", "admin_display_name": "Bien", field: value}
    answer = api.post("/admin/brokers", json=body, headers=root)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    named = detail.startswith(f"{field} ") or detail.startswith(f"{field}:") if isinstance(detail, str) \
        else detail[0]["loc"] == ["body", field]
    assert named, detail
    assert rows(settings, "SELECT 1 FROM leadflow.users WHERE email = %s", f"ok-{tag}@sur.test") == []


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "sin arroba", "display_name": "X", "role": "AGENT"}, "email"),
    ({"email": "nul\u0000@y.cl", "display_name": "X", "role": "AGENT"}, "email"),
    ({"email": "x@y.cl", "display_name": "nul\u0000", "role": "AGENT"}, "display_name"),
    ({"email": "x@y.cl", "display_name": "solo\ud800", "role": "AGENT"}, "display_name"),
    ({"email": "x\ud800@y.cl", "display_name": "X", "role": "AGENT"}, "email"),
    ({"email": "x@y.cl", "display_name": "", "role": "AGENT"}, "display_name"),
    ({"email": "x@y.cl", "display_name": "X", "role": "JEFE"}, "role"),
    ({"email": "x@y.cl", "display_name": "X"}, "role"),
])
def test_an_invitation_with_a_bad_field_is_refused_naming_the_field(api: TestClient, a: Admin, body: dict[str, str],
                                                                    field: str) -> None:
    # Encoded here: json.dumps escapes a lone surrogate (\ud800), which the client's own encoder refuses.
    answer = api.post(f"/admin/brokers/{a.broker_id}/users", content=json.dumps(body),
                      headers={**a.headers, "Content-Type": "application/json"})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    named = detail.startswith(f"{field} ") or detail.startswith(f"{field}:") if isinstance(detail, str) \
        else detail[0]["loc"] == ["body", field]
    assert named, detail


def test_a_taken_slug_or_email_is_a_conflict_and_changes_nothing(api: TestClient, root: Headers, a: Admin,
                                                                 settings: Settings) -> None:
    created = new_broker(api, root, name="Original")
    slug = created["broker"]["slug"]
    tag = uuid.uuid4().hex[:8]
    again = api.post("/admin/brokers", headers=root, json={
        "slug": slug, "name": "Otra", "country": "AR", "timezone": "America/Buenos_Aires",
        "admin_email": f"otra-{tag}@sur.test", "admin_display_name": "Otra"})
    assert again.status_code == 409 and again.json()["detail"].startswith("slug ")
    assert rows(settings, "SELECT name, country FROM leadflow.brokers WHERE slug = %s", slug) == [("Original", "CL")]
    assert rows(settings, "SELECT 1 FROM leadflow.users WHERE email = %s", f"otra-{tag}@sur.test") == []
    # The admin's email taken: the broker is not created either.
    taken = api.post("/admin/brokers", headers=root, json={
        "slug": f"nueva-{tag}", "name": "Nueva", "country": "CL", "timezone": "America/Santiago",
        "admin_email": a.email.upper(), "admin_display_name": "Nueva"})
    assert taken.status_code == 409 and taken.json()["detail"].startswith("admin_email ")
    assert rows(settings, "SELECT 1 FROM leadflow.brokers WHERE slug = %s", f"nueva-{tag}") == []
    dup = api.post(f"/admin/brokers/{a.broker_id}/users", headers=a.headers,
                   json={"email": a.email, "display_name": "Yo otra vez", "role": "AGENT"})
    assert dup.status_code == 409


def test_the_audit_holds_no_secret_is_paged_and_is_read_only_by_its_brokers_admins(
        api: TestClient, root: Headers, b: Admin, settings: Settings) -> None:
    owner = broker_with_admin(api, root)
    links = [invite(api, owner)["invitation_url"] for _ in range(3)]
    for link in links:
        assert accept(api, link) == 200
    pages: list[dict[str, Any]] = []
    cursor: dict[str, int] = {}
    while True:
        found = audit_of(api, owner.headers, owner.broker_id, limit=2, **cursor)
        pages.extend(found["entries"])
        if found["next_before_id"] is None:
            break
        cursor = {"before_id": found["next_before_id"]}
    ids = [e["audit_id"] for e in pages]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) == 3 + 3 * 2
    assert audit_of(api, root, owner.broker_id)["entries"][0]["audit_id"] == ids[0]  # a SUPERADMIN reads it too
    assert api.get(f"/admin/brokers/{owner.broker_id}/audit", headers=b.headers).status_code == 403
    stored = rows(settings, "SELECT before::text, after::text FROM leadflow.audit_log WHERE broker_id = %s",
                  owner.broker_id)
    text = json.dumps(stored)
    assert "password" not in text and "$2" not in text and "token" not in text
    assert not any(token_of(link) in text for link in links)
    assert PASSWORD not in text


def test_a_deactivated_person_who_was_never_activated_cannot_use_the_link(api: TestClient, a: Admin) -> None:
    found = invite(api, a)
    user_id = found["person"]["user_id"]
    assert api.patch(f"/admin/brokers/{a.broker_id}/users/{user_id}", headers=a.headers,
                     json={"disabled": True}).status_code == 200
    assert accept(api, found["invitation_url"]) == 404
    assert api.post(f"/admin/brokers/{a.broker_id}/users/{user_id}/invitation", headers=a.headers).status_code == 409


def test_the_admin_routes_are_documented(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/admin/brokers", "/admin/brokers/{broker_id}/users", "/admin/brokers/{broker_id}/users/{user_id}",
            "/admin/brokers/{broker_id}/audit", "/admin/invitations/accept"} <= set(paths)
    assert paths["/admin/brokers"]["post"]["tags"] == ["admin"]
    assert not any(p.startswith("/dashboard") for p in paths)


# --- the pages: the same refusals, as pages a person reads, never a 500 ------------------------------------

def dashboard_as(api: TestClient, email: str) -> TestClient:
    """A client of its own (its own cookie) logged in to the dashboard as ``email``."""
    client = TestClient(api.app, follow_redirects=False)
    answer = client.post("/dashboard/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form"
    return found.group(1)


@pytest.fixture(scope="module")
def root_email(settings: Settings, cheap_hashes: None) -> str:
    return add_user(settings.database_url, f"root-p-{uuid.uuid4().hex[:8]}@admin.test", PASSWORD,
                    role="SUPERADMIN").email


def test_the_pages_refuse_other_brokers_agents_and_forms_without_their_token(
        api: TestClient, a: Admin, b: Admin, settings: Settings) -> None:
    admin = dashboard_as(api, a.email)
    own = admin.get(f"/dashboard/brokers/{a.broker_id}/admin/users")
    assert own.status_code == 200 and 'id="admin-link"' in own.text
    token = csrf_of(own.text)
    email = f"p-{uuid.uuid4().hex[:6]}@sur.test"
    assert [admin.get(f"/dashboard/brokers/{b.broker_id}/admin/users").status_code,
            admin.get(f"/dashboard/brokers/{b.broker_id}/admin/audit").status_code,
            admin.post(f"/dashboard/brokers/{b.broker_id}/admin/users",
                       data={"csrf": token, "email": email, "display_name": "P", "role": "AGENT"}).status_code,
            admin.post(f"/dashboard/brokers/{b.broker_id}/admin/users/{b.user_id}",
                       data={"csrf": token, "disabled": "true"}).status_code,
            admin.get("/dashboard/admin/brokers").status_code] == [403] * 5
    # A form without the session's token writes nothing.
    assert admin.post(f"/dashboard/brokers/{a.broker_id}/admin/users",
                      data={"email": email, "display_name": "P", "role": "AGENT"}).status_code == 403
    assert admin.post(f"/dashboard/brokers/{a.broker_id}/admin/users",
                      data={"csrf": token, "email": email, "display_name": "P", "role": "SUPERADMIN"}).status_code \
        == 403
    assert rows(settings, "SELECT 1 FROM leadflow.users WHERE email = %s", email) == []
    _, agent_email, _ = invited_person(api, a)
    agent = dashboard_as(api, agent_email)
    page = agent.get(f"/dashboard/brokers/{a.broker_id}/admin/users")
    assert page.status_code == 403 and "only the broker&#39;s admins" in page.text
    assert 'id="admin-link"' not in page.text
    assert agent.get(f"/dashboard/brokers/{a.broker_id}/admin/audit").status_code == 403
    assert TestClient(api.app, follow_redirects=False).get(
        f"/dashboard/brokers/{a.broker_id}/admin/users").headers["location"] == "/dashboard/login"


@pytest.mark.parametrize(("field", "value", "label"), [
    ("country", "Chile", "País: country"), ("timezone", "Marte/Olimpo", "Zona horaria: timezone"),
    ("slug", "Con Espacios", "Identificador (slug): slug"), ("admin_email", "sin-arroba", "Correo del administrador"),
    ("name", "", "Nombre: name"), ("slug", "x" * 5000, "Identificador (slug): slug"),
    ("timezone", "\x00Améric@/Santiago", "Zona horaria"), ("country", "cl\x00", None),
])
def test_a_broker_form_with_bad_input_comes_back_naming_the_field(
        api: TestClient, root_email: str, field: str, value: str, label: str | None) -> None:
    client = dashboard_as(api, root_email)
    token = csrf_of(client.get("/dashboard/admin/brokers").text)
    tag = uuid.uuid4().hex[:8]
    form = {"csrf": token, "slug": f"f-{tag}", "name": "Forma", "country": "CL", "timezone": "America/Santiago",
            "admin_email": f"f-{tag}@sur.test", "admin_display_name": "Forma", field: value}
    answer = client.post("/dashboard/admin/brokers", data=form)
    if label is None:  # what the form cleans (a NUL) is accepted
        assert answer.status_code == 200 and "invitation-url" in answer.text
        return
    assert answer.status_code == 422, answer.text[:500]
    assert label in answer.text and 'aria-invalid="true"' in answer.text
    assert f'value="f-{tag}@sur.test"' in answer.text or field == "admin_email"  # what was typed stays


def test_a_form_that_is_not_utf_8_is_refused_with_a_message(api: TestClient, root_email: str) -> None:
    client = dashboard_as(api, root_email)
    token = csrf_of(client.get("/dashboard/admin/brokers").text)
    body = (f"csrf={token}&slug=ok-{uuid.uuid4().hex[:6]}&name=N&country=CL&timezone=%ED%A0%80&admin_email=x%40y.cl"
            "&admin_display_name=N")
    answer = client.post("/dashboard/admin/brokers", content=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 422 and "Zona horaria" in answer.text


def test_the_invitation_page_refuses_a_bad_link_and_a_bad_password(api: TestClient, a: Admin) -> None:
    client = TestClient(api.app, follow_redirects=False)
    assert client.get("/dashboard/invite/no-such-token-at-all-here").status_code == 404
    assert client.get("/dashboard/invite/x").status_code == 404
    link = invite(api, a)["invitation_url"]
    path = link.removeprefix("http://testserver")
    page = client.get(path)
    assert page.status_code == 200
    token = csrf_of(page.text)
    short = client.post(path, data={"csrf": token, "password": "corta", "password_confirmation": "corta"})
    assert short.status_code == 422 and "Contraseña: the password needs at least 10" in short.text
    assert client.post(path, data={"password": PASSWORD, "password_confirmation": PASSWORD}).status_code == 403
    done = client.post(path, data={"csrf": token, "password": PASSWORD, "password_confirmation": PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/dashboard/login?welcome=1"
    assert client.post(path, data={"csrf": token, "password": PASSWORD,
                                   "password_confirmation": PASSWORD}).status_code == 404
