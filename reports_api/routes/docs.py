"""dbt's documentation site at /dbt-docs/: for a logged-in caller, and only the files its page reads.

``dbt docs generate`` writes more than the site into its target directory (run results, the partial
parse cache, the pickled graph, all with the server's absolute paths); none of it is served.
Left out of the OpenAPI document, like the dashboard.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response

from reports_api.dashboard import COOKIE
from reports_api.deps import Tokens
from reports_api.security import InvalidToken, Principal, read_token

router = APIRouter(prefix="/dbt-docs", tags=["docs"], include_in_schema=False)

# What dbt's index.html fetches; everything else in the directory stays private.
SITE = {"index.html": "text/html; charset=utf-8", "manifest.json": "application/json",
        "catalog.json": "application/json"}


def _caller(request: Request, tokens: Tokens) -> Principal | None:
    """The bearer token's principal, else the dashboard session cookie's; None without a valid one."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
    if not token:
        return None
    try:
        return read_token(tokens, token)
    except InvalidToken:
        return None


def _serve(request: Request, tokens: Tokens, name: str) -> Response:
    if _caller(request, tokens) is None:
        if name == "index.html" and "text/html" in request.headers.get("accept", ""):
            # A person in a browser: the dashboard's login sets the cookie this page reads.
            return RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in at /dashboard/login or POST /auth/token",
                            headers={"WWW-Authenticate": "Bearer"})
    if name not in SITE:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not part of the dbt docs site")
    docs_dir: Path = request.app.state.docs_dir
    path = docs_dir / name
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the dbt docs have not been generated yet")
    # private: a shared cache must not hand one caller's authenticated answer to another.
    return FileResponse(path, media_type=SITE[name], headers={"Cache-Control": "private, no-cache"})


@router.get("/")
def index(request: Request, tokens: Tokens) -> Response:
    return _serve(request, tokens, "index.html")


@router.get("/{name}")
def site_file(request: Request, tokens: Tokens, name: str) -> Response:
    return _serve(request, tokens, name)
