"""Broker self-service (issue 14): brokers, their people and invitations, and the audit of every admin write.

``access`` holds who may do what (checked here, in Python: these writes run as the database owner, outside
row-level security) and the refusals the routes turn into HTTP answers; ``people`` registers brokers, invites,
changes and deactivates people and redeems invitations; ``audit`` writes and reads ``leadflow.audit_log``.
Routes: ``reports_api.routes.admin`` (JSON) and ``admin_pages`` (HTML).
"""
