"""The course's runtime library: every notebook imports it, students included.

One small module per teaching topic (see docs/architecture.md). Public code: no
solutions to the exercises and no hidden tests live here.
"""

__version__ = "0.1.0"
