"""HTTP in: one module per channel (telegram, whatsapp, vapi, bland, form).

Security of the webhooks, in the order a request meets it:

- **Size.** A declared Content-Length over ``intake.MAX_BODY_BYTES`` (512 KiB) is answered 413
  before anything else, body unread; a body streamed without one is cut off at the same size.
- **Who.** The broker in the path and the channel's secret are looked up before the body is read
  (header-token channels check the token then too). Unknown broker, channel without a secret,
  missing or wrong credential: all the same ``403 {"detail": "forbidden"}``; the reason is in the
  server log. Not hidden: timing (an unknown slug can trigger a directory reload), and a body
  streamed without Content-Length past the size limit gets 413 from a configured broker's
  signature-checked route (WhatsApp, Bland, signed VAPI: a signature needs the whole body) where
  an unknown broker gets 403.
- **Shape.** Authentic but malformed (not JSON, nested deeper than ``intake.MAX_JSON_DEPTH``,
  impossible timestamps, missing fields): 422, with the raw body kept in the dead-letter topic.
- **Replays.** Every event id derives from the provider's id and the landing stores each id once,
  so a replayed delivery lands nothing new. On top of that, only a time the provider signs can
  bound a replay, and only where the provider never redelivers later than the bound:
  VAPI's ``message.timestamp`` (when VAPI sent the report; retries come within minutes) is held
  to ``vapi.REPLAY_WINDOW`` (48 h; older → 422 and a dead letter, so a late resend is not lost).
  No window elsewhere: Telegram and form requests carry a static header secret, not a signature,
  so whoever can replay one can also forge a fresh date; WhatsApp redelivers for up to 7 days and
  its timestamps are when a message was sent, so a window shorter than that drops real messages;
  Bland's body has the call's own times only (no delivery time); and historical deliveries
  (the demo's stream, backfills) legitimately carry old message and call times.

Each route does three things and nothing else: verify the request is authentic, parse the
provider payload into canonical events (``leadflow.events``), and produce them to Kafka,
answering 200 only after Kafka acknowledged them. The shared steps live in ``intake.py``.
"""
