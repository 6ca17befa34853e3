from PIL import Image

from course.cli import main


def test_demo_runs_offline_and_saves_the_figure(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC DATA - pneumonia" in out and "SYNTHETIC DATA - cspine" in out
    assert "pneumonia: SYNTHETIC data at" in out  # print_config names the source
    figure = tmp_path / "demo" / "batches.png"
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.width > 600
