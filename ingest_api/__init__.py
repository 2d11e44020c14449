"""HTTP in: one module per channel (telegram, whatsapp, vapi, bland, form).

Each route does three things and nothing else: verify the request is authentic, parse the
provider payload into canonical events (``leadflow.events``), and produce them to Kafka,
answering 200 only after Kafka acknowledged them. The shared steps live in ``intake.py``.
"""
