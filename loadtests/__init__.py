"""Locust load test of the moderation service, its gate, and the serving benchmark."""
