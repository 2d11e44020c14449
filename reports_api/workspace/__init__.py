"""The broker workspace (issue 13): inbox, lead page, board, notes, tags, assignment and stage moves.

``reads`` holds the SQL the pages and the JSON API share (on ``deps.broker_cursor``), ``db`` the write path
(its own read-write, broker-scoped transaction, every write audited), ``csrf`` the forms' tokens and
``schemas`` the API's models. Routes: ``reports_api.routes.workspace`` (JSON) and ``workspace_pages`` (HTML).
"""
