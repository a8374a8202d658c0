"""Reaching a person: one message through one channel (e-mail, SMS gateway, Zalo ZNS). The citizen
loop tells reporters through it, the on-call pager pages staff through it."""
