"""The one error type that the command line turns into a single line and exit code 2, and
the one wording of what pydantic found wrong with a value."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: a flag, a spec key, a missing data folder.

    The message is one line that says what was wrong, where, and what is allowed.
    """


def value_problem(item: dict, *, keep_case: bool = False) -> str:
    """One pydantic error item as a clause: 'input should be greater than 0, got 0'.
    The messages of the project's own validators, which name the value, stay as they are."""
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "value_error":
        return message
    if not keep_case:
        message = message[0].lower() + message[1:]
    return f"{message}, got {item['input']!r}"
