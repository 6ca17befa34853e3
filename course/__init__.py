"""Instructor tooling, never shipped to students: the `course` command (demo, release,
publish, lab, grade, grade-merge) and the modules behind it, configured by course.toml."""
