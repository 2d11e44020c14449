"""Leads in PostgreSQL, one module per thing persisted; the pure logic lives one level up.

- ``identities``: messages without a lead → leads (created, linked, merged), and what ``leads`` says of each;
- ``qualifications``: the leads whose conversation changed → qualifications, with the LLM answers kept
  and their usage counted;
- ``scores``: qualifications newer than their score → scores;
- ``stages``: newly scored leads → pipeline stages and stage events, stalled flags, and the forward
  move a campaign, a visit or a person makes.
- ``assignment``: new, never-assigned leads → their person, by the broker's automatic assignment.

Each step runs in one transaction under its own advisory lock, so a step never interleaves with
itself, and each is incremental: it reads only what changed since it last ran.
"""
