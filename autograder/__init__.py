"""Grading-only code: the notebooks' hidden checks and what they share. Never shipped.

The student bundle holds `release/` and `helpers/` only; `course release --check` and
`course publish` fail when a student notebook imports this package.

* ``pneumonia_checks``, ``cspine_checks`` - one ``check_*`` per autograded exercise, called
  by the hidden-test regions of ``source/<assignment>/<assignment>.ipynb``;
* ``common``            - what both use: failure messages, fixtures, forbidden references,
  and assignment 1's IoU and Grad-CAM checks;
* ``tripwire``          - runs a student's function while watching for calls into the
  functions or modules it was asked not to use;
* ``gradcam_reference`` - the reference solution of the Grad-CAM exercise;
* ``isolation``         - ``recorded``, the decorator every public ``check_*`` wears: under
  autograde it records the call so the worker can run it again outside the kernel;
* ``recheck``           - that run: a fresh process, checks loaded from disk first, guards on.

The per-submission runner and its isolation live in ``course/`` (``grade.py``, ``worker.py``).
"""
