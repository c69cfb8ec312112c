"""Checkers for the book's exercises: one module per chapter (``ch02``, ``ch03``, ...).

Each checker takes the student's answer, prints what is right or what is wrong, and returns
``True`` or ``False``; it never raises on a wrong answer, only on an answer of the wrong kind
(a ``ValueError`` naming the argument and what was expected).
"""


def report(ok: bool, message_ok: str, message_wrong: str) -> bool:
    """Print a verdict for the student and return ``ok``."""
    print(("Correct: " + message_ok) if ok else ("Not yet: " + message_wrong))
    return ok
