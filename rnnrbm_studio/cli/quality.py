"""Commands measuring the model: eval."""


def register(subparsers) -> None:
    """The eval command arrives with the evaluation module."""
