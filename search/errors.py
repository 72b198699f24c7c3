"""The one exception type that entry points turn into a one-line error and an exit code."""


class UsageError(Exception):
    """Something the user gave cannot work; the message says what and how to fix it."""
