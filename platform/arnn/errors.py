"""The one error type that the command line turns into a single line and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: a flag, a spec key, a missing data folder.

    The message is one line that says what was wrong, where, and what is allowed.
    """
