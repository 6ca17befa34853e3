"""``google.colab.patches`` under grading: ``cv2_imshow`` shows nothing (no browser)."""

from google.colab import say


def cv2_imshow(a) -> None:
    """Colab displays an OpenCV image; under grading it is not shown."""
    say("patches.cv2_imshow() shows nothing while grading")
