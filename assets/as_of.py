"""The instant a run describes, one config for every job: the campaign batch and the analytics.

Empty means "when the run starts"; set it to replay a batch or rebuild the marts as of a past
moment. Nothing downstream reads the clock itself, so the same ``as_of`` gives the same result.
"""

from datetime import UTC, datetime

from dagster import Config


class AsOf(Config):
    """The run's instant (ISO 8601, e.g. "2026-11-26T15:00:00+00:00"); empty: when the run starts."""

    as_of: str = ""

    def moment(self) -> datetime:
        return datetime.fromisoformat(self.as_of) if self.as_of else datetime.now(UTC)

    def instant(self) -> str:
        """The moment as ISO 8601, as dbt's ``as_of()`` macro reads it."""
        return self.as_of or self.moment().isoformat()
