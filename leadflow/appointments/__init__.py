"""Appointments: availability, slots offered to leads, bookings, reminders and the broker's calendar."""
