"""Outbound: the dispatcher that turns campaign commands into sends through each channel's API."""
