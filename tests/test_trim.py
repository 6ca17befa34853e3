"""TrimLongOutputs: text outputs cut to max_chars with a marker, and exactly those counted."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

from course.trim import TrimLongOutputs, count_trimmed, with_trimming


def _notebook():
    return new_notebook(cells=[
        new_markdown_cell("x" * 50),  # not an output: never cut
        new_code_cell("print()", outputs=[
            new_output("stream", name="stdout", text="a" * 25),  # cut
            new_output("stream", name="stdout", text=["b" * 5, "b" * 5]),  # 10: kept
        ]),
        new_code_cell("x", outputs=[
            new_output("execute_result", data={"text/plain": "c" * 11,  # cut
                                               "text/html": "d" * 30,  # cut
                                               "image/png": "e" * 40},  # not text: kept
                       execution_count=1),
            new_output("error", ename="ValueError", evalue="f" * 40, traceback=["g" * 40]),
        ]),
    ])


def test_long_text_outputs_are_cut_marked_and_counted():
    nb, _ = TrimLongOutputs(max_chars=10).preprocess(_notebook(), {})
    stream = nb.cells[1].outputs
    assert stream[0].text == "a" * 10 + "\n... [15 characters of output removed by the grader]\n"
    assert "".join(stream[1].text) == "b" * 10
    data = nb.cells[2].outputs[0].data
    assert data["text/plain"].startswith("c" * 10 + "\n... [1 characters")
    assert data["text/html"].startswith("d" * 10 + "\n... [20 characters")
    assert data["image/png"] == "e" * 40
    assert nb.cells[2].outputs[1].evalue == "f" * 40  # errors decide scores: untouched
    assert nb.cells[0].source == "x" * 50
    assert count_trimmed(nb, max_chars=10) == 3
    assert count_trimmed(nbformat.reads(nbformat.writes(nb), as_version=4), max_chars=10) == 3


def test_nothing_cut_counts_zero_and_a_printed_marker_does_not_count():
    nb = _notebook()
    assert count_trimmed(nb, max_chars=10) == 0
    fake = "\n... [9 characters of output removed by the grader]\n"
    nb.cells[1].outputs[1].text = "short" + fake  # not after exactly max_chars characters
    nb, _ = TrimLongOutputs(max_chars=1000).preprocess(nb, {})
    assert count_trimmed(nb, max_chars=1000) == 0


def test_autograde_runs_it_right_after_limit_output():
    config = with_trimming(Config(), max_chars=7)
    steps = [p.__name__ for p in config.Autograde.autograde_preprocessors]
    assert steps == ["Execute", "IgnorePattern", "ClearMetadataPreprocessor", "LimitOutput",
                     "TrimLongOutputs", "SaveAutoGrades", "AssignLatePenalties",
                     "CheckCellMetadata"]
    assert config.TrimLongOutputs.max_chars == 7
