"""Appointments in Google Calendar: the calendar sync, every few minutes (``appointment_calendar_job``)."""

from dagster import MaterializeResult, MetadataValue, asset

from assets.as_of import AsOf
from leadflow.appointments.calendar_sync import sync_calendars
from pipelines.resources import GoogleCalendarResource, PostgresResource


@asset(group_name="appointments", kinds={"postgres"},
       description="Appointments written to their person's Google Calendar (else the broker's): created, moved, "
                   "deleted when cancelled, marked when held or missed, with a Meet link for virtual visits; then "
                   "each connected person's busy times (freeBusy) over the broker's horizon into calendar_busy, which "
                   "the slots offered to leads avoid. A refused token is refreshed once, then the connection is "
                   "marked broken and the admins told; Google busy or away leaves visits pending with the reason.")
def appointment_calendar(config: AsOf, postgres: PostgresResource,
                         google_calendar: GoogleCalendarResource) -> MaterializeResult:
    result = sync_calendars(postgres.url, google_calendar.master_keys(postgres.url),
                            google_calendar.client(postgres.url), config.moment())
    return MaterializeResult(metadata={
        "created": result.created, "updated": result.updated, "deleted": result.deleted,
        "not_connected": result.not_connected, "pending_by_reason": MetadataValue.json(dict(result.pending)),
        "failed_by_reason": MetadataValue.json(dict(result.failed)),
        "connections_broken": MetadataValue.json(result.broken),
        "busy_calendars_read": result.busy_read, "busy_intervals": result.busy_intervals,
        "brokers_skipped_running_elsewhere": result.skipped_brokers})
