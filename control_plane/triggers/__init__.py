"""Triggers from outside the schedule: published events and signed webhooks."""
