"""The one base class of errors a user can cause and fix (bad paths, bad files, no MIDI system).

Front ends catch StudioError and show its one-line message; anything else is a bug.
"""


class StudioError(Exception):
    """An error with a one-line message meant for the user."""
