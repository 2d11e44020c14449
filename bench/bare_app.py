"""The baseline: a bare FastAPI endpoint that reads the body and answers, doing nothing else."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhooks/{broker}/telegram")
async def bare(request: Request, broker: str) -> dict[str, object]:
    await request.body()
    return {"accepted": 1, "ignored": None}
