"""Hand-graded cells (written answers) in the persistent gradebook: what a re-import keeps.

A TA scores written answers in nbgrader's Formgrader, which stores ``Grade.manual_score``
(and ``extra_credit``), ``Comment.manual_comment`` and sets ``needs_manual_grade`` to False.
Re-importing a student's executed notebook (`course grade` again) runs nbgrader's
autograde, whose ``SaveAutoGrades`` never overwrites a manual score or comment but sets
``needs_manual_grade`` back to True on every cell that has a manual score or no autograded
score: every written answer would look ungraded again. So, around each re-import:

* a written answer whose text is unchanged (nbgrader's own cell checksum, read from the
  notebook the TA graded, ``autograded/<student>/...``) gets its ``needs_manual_grade``
  back: the hand-given score stands;
* a written answer that changed (a resubmission) keeps nbgrader's ``needs_manual_grade``:
  its old score and comment stay visible in Formgrader, but the row says "changed since it
  was hand-graded: regrade it" and no grade counts it until a TA enters a score again;
* an autograded cell whose score a TA overrode keeps the override only while its
  autograded score is the same; otherwise it waits for review, as nbgrader intends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import compute_checksum, is_grade, is_solution


def answer_cells(notebook) -> set[str]:
    """grade_ids of a gradebook Notebook's hand-graded answer cells (graded solution cells:
    nbgrader's "Manually graded answer")."""
    solutions = {c.name for c in notebook.solution_cells}
    return {c.name for c in notebook.grade_cells if c.name in solutions}


def answer_checksums(path: Path) -> dict[str, str]:
    """grade_id -> nbgrader checksum of each written answer in the notebook at PATH
    ({} when there is none yet)."""
    if not path.is_file():
        return {}
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: compute_checksum(c) for c in nb.cells
            if is_grade(c) and is_solution(c)}


def snapshot(submission) -> dict[str, tuple]:
    """grade_id -> (manual_score, needs_manual_grade, auto_score) of a SubmittedNotebook."""
    return {g.name: (g.manual_score, g.needs_manual_grade, g.auto_score)
            for g in submission.grades}


def restore(submission, answers: set[str], before: dict[str, tuple],
            old: dict[str, str], new: dict[str, str]) -> None:
    """Give back ``needs_manual_grade`` to every hand-graded cell whose graded content did
    not change in the re-import (see the module docstring); commit is the caller's."""
    for g in submission.grades:
        if g.name not in before or g.needs_manual_grade == before[g.name][1]:
            continue
        if g.name in answers:
            unchanged = g.name in old and old[g.name] == new.get(g.name)
        else:
            unchanged = g.auto_score == before[g.name][2]
        if unchanged:
            g.needs_manual_grade = before[g.name][1]


@dataclass
class HandGrades:
    """One submission's written answers as grades.csv and `course export` report them."""

    points: dict[str, float | None] = field(default_factory=dict)  # None: awaits a TA
    ungraded: int = 0
    changed: list[str] = field(default_factory=list)  # answers changed since graded
    review: list[str] = field(default_factory=list)  # overridden autograded cells

    @property
    def pending(self) -> bool:
        return bool(self.ungraded or self.changed or self.review)

    def note(self) -> str:
        """What a TA still has to do, for the row's reason ('' when nothing)."""
        notes = []
        if self.ungraded:
            notes.append(f"{self.ungraded} written answer(s) not graded yet (Formgrader)")
        notes += [f"written answer {n} changed since it was hand-graded: regrade it"
                  for n in self.changed]
        notes += [f"{n}: its autograded score changed since a TA overrode it: review it"
                  for n in self.review]
        return "; ".join(notes)


def hand_grades(submission, answers: set[str]) -> HandGrades:
    """The written answers' points and what awaits a TA, from a SubmittedNotebook."""
    result = HandGrades()
    for g in submission.grades:
        if g.name in answers:
            result.points[g.name] = None if g.needs_manual_grade else float(g.score)
            if g.needs_manual_grade and g.manual_score is None:
                result.ungraded += 1
            elif g.needs_manual_grade:
                result.changed.append(g.name)
        elif g.needs_manual_grade and g.manual_score is not None:
            result.review.append(g.name)
    return result


def state(submission) -> str:
    """Everything a TA can change in Formgrader for one submission, as one string: when it
    differs from the last feedback's, the feedback is generated again."""
    grades = sorted((g.name, g.auto_score, g.manual_score, g.extra_credit,
                     g.needs_manual_grade) for g in submission.grades)
    comments = sorted((c.name, c.manual_comment) for c in submission.comments)
    return repr((grades, comments))
