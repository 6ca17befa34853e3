"""The course's runtime library: every notebook imports it, students included.

One small module per teaching topic (see docs/architecture.md). Public code: no
solutions to the exercises and no hidden tests live here.
"""

import os

# albumentations asks PyPI for a newer version when it is imported: a network call at
# import time. The course runs offline by default, so switch that off before any import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
