"""Operational endpoints: liveness and the health check."""

from fastapi import APIRouter

from reports_api.deps import Pool

router = APIRouter(tags=["ops"])


@router.get("/health")
def health(pool: Pool) -> dict[str, str]:
    """PostgreSQL reachability (a 500 when it does not answer)."""
    pool.ping()
    return {"status": "ok"}


@router.get("/live")
def live() -> dict[str, str]:
    """The process answers (a liveness probe): PostgreSQL being away takes it out of service, not down."""
    return {"status": "ok"}
