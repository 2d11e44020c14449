"""The admin pages (broker self-service); the pages themselves come in the next commit."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
