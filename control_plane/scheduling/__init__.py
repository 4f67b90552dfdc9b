"""Schedules: the live state of each pipeline's schedule, the scheduler that fires them, and
backfills of past fire times."""
