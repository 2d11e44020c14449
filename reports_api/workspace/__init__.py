"""The broker workspace (issue 13): inbox, lead page, board, notes, tags, assignment, stage moves, a person's
reply, leads typed in and CSV imports.

``reads`` holds the SQL the pages and the JSON API share (on ``deps.broker_cursor``), ``db`` the write path
(its own read-write, broker-scoped transaction, every write audited), ``provenance`` where each qualification
fact came from, ``settings`` the broker's automatic assignment, ``imports`` the import job and its tables,
``publish`` a person's messages onto Kafka, ``csrf`` the forms' tokens and ``schemas`` the API's models.
Routes: ``reports_api.routes.workspace`` (JSON), ``workspace_pages`` (HTML), ``workspace_settings`` and
``workspace_imports`` (both).
"""
