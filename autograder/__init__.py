"""Grading-only code: hidden checks, the per-submission runner, isolation settings.

It never ships to students (the student bundle holds `release/` and `helpers/` only).
Empty until the grading issues (6, 7) land; see docs/architecture.md.
"""
