"""Instructor tooling, never shipped to students: the `course` command (demo, release,
publish, lab, grade, grade-merge, formgrade, export) and the modules behind it, configured
by course.toml."""
