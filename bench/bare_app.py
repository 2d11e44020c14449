"""The baselines: bare FastAPI endpoints that answer without doing anything else."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhooks/{broker}/telegram")
async def bare(request: Request, broker: str) -> dict[str, object]:
    await request.body()
    return {"accepted": 1, "ignored": None}


@app.get("/bare/funnel")
async def bare_get() -> dict[str, object]:
    return {"stages": [], "periods": []}
