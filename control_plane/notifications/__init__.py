"""Notifications: which events send what (events), the outbox (store/notifications), the
channels that deliver them (channels) and the delivery loop (delivery)."""
