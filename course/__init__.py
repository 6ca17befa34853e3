"""Instructor tooling: the `course` command (demo now; release, publish, grade to come)."""
