"""Commands for live playback: ports, play."""


def register(subparsers) -> None:
    """Live commands arrive with the live player."""
