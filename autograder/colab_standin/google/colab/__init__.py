"""A harmless stand-in for Colab's ``google.colab`` package, for grading only.

Students write Colab habits into their notebooks: ``from google.colab import drive`` and
``drive.mount("/content/drive")``, ``files.download(...)``, ``userdata.get("KAGGLE_KEY")``.
Under grading there is no Colab, and such a line must not cost points, so the grading
kernel finds this package on its PYTHONPATH (course/sandbox.py `colab_standin`, put there
by the worker for every backend). It is only importable, never imported in advance: the
release notebooks' set-up cell installs the bundle only when ``"google.colab" in
sys.modules``, and that stays false until a student's own cell imports it.

It lives in autograder/, so it never reaches the student bundle. The folder above it has no
``__init__.py`` on purpose: ``google`` is a namespace package (PEP 420), so another
``google.*`` distribution (protobuf, ...) still imports beside it.
"""

GRADING_STANDIN = True


def say(what: str) -> None:
    """Print what a Colab call did here: nothing, because this is grading, not Colab."""
    print(f"[grading stand-in for google.colab] {what}")
