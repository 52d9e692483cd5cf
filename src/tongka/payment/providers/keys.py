"""Key material read from the settings, as the providers load it."""

from __future__ import annotations


def pem(value: str) -> bytes:
    """A PEM key from a setting, whether its newlines are real or written as `\\n`.

    `tongka keys generate` writes PEM keys on one line with `\\n` escapes (env files hold one
    line per value); a key pasted with real newlines reads the same.
    """
    return value.replace("\\n", "\n").encode()
