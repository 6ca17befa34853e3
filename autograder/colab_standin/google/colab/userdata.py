"""``google.colab.userdata`` (Colab Secrets) under grading: there are no secrets."""

from google.colab import say


class SecretNotFoundError(Exception):
    """As in Colab: the secret does not exist (here: none do)."""


class NotebookAccessError(Exception):
    """As in Colab: the notebook may not read the secret."""


def get(key: str) -> str:
    """Colab reads the user's secret ``key``; under grading no secret exists."""
    say(f"userdata.get({key!r}): no secrets while grading")
    raise SecretNotFoundError(key)
