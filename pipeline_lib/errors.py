"""The one exception type that means "the user's input is wrong"."""


class UserError(Exception):
    """Bad input: a file, key or value the user supplied.

    The command-line interface prints these as a single ``error: ...`` line (no traceback)
    and exits with status 2, so the message must name the offending file, key or value.
    """
