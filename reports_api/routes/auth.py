"""Logging in for a bearer token, and who the token belongs to."""

# No `from __future__ import annotations`: FastAPI must see the Annotated aliases as objects.

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from reports_api.deps import ERRORS, Caller, Tokens
from reports_api.schemas import LoginRequest, Me, Problem, Token
from reports_api.security import attempt_login, issue_token

router = APIRouter(tags=["auth"])


@router.post("/auth/token", response_model=Token, responses={401: {"model": Problem}, 429: {"model": Problem}})
async def login(body: LoginRequest, request: Request, tokens: Tokens) -> Token | JSONResponse:
    """Exchange email and password for an access token (rate-limited per address and per email)."""
    user, wait = await attempt_login(request, body.email, body.password)
    if wait:
        return JSONResponse({"detail": "too many login attempts; try again later"}, status_code=429,
                            headers={"Retry-After": str(max(1, round(wait)))})
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    return Token(access_token=issue_token(tokens, user), expires_in=int(tokens.ttl.total_seconds()),
                 role=user.role, broker_id=user.broker_id)


@router.get("/me", response_model=Me, responses=ERRORS)
def me(who: Caller) -> Me:
    return Me(user_id=who.user_id, email=who.email, role=who.role, broker_id=who.broker_id)
