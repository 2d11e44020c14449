"""Placeholder."""

from fastapi import APIRouter

router = APIRouter(prefix="/dashboard", tags=["admin pages"], include_in_schema=False)
