"""The lead agent: given a conversation, the bot's next reply (pure: no I/O, no clock, no network)."""
