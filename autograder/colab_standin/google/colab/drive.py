"""``google.colab.drive`` under grading: mounting does nothing (the grader has no Drive)."""

from google.colab import say


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000,
          readonly: bool = False) -> None:
    """Colab's signature; under grading, no Drive is mounted and nothing is written."""
    say(f"drive.mount({mountpoint!r}) does nothing while grading: there is no Drive here")


def flush_and_unmount(timeout_ms: int = 24 * 60 * 60 * 1000) -> None:
    """Colab's signature; nothing to unmount under grading."""
    say("drive.flush_and_unmount() does nothing while grading")
