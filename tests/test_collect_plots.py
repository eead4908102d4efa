"""The collector's PNG plots: written atomically, valid PNGs that PIL and matplotlib read back,
paths printed; a failing plot is a warning, never a lost table."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest
from collect_fixtures import paper_grid, write_tree
from matplotlib.figure import Figure
from PIL import Image

from cass_hpc.collect import main
from cass_hpc.report import plots
from cass_hpc.report.records import parse_record, records_frame
from cass_hpc.report.timing import pretrain_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [{"epoch": e, "val_loss": 1.0 / e, "val_micro_f1": 0.5 + 0.1 * e} for e in (1, 2, 3)]


def grid_with_curves() -> list[dict[str, object]]:
    """The paper-shaped grid, each cell with a fine-tuning history and pretraining losses."""
    records = paper_grid()
    for record in records:
        record["finetune"]["history"] = HISTORY  # type: ignore[index]
        if record["pretrain"]:
            spread = {"cnn": [3.0, 2.0, 1.5], "vit": [2.0, 0.5, 0.05]}
            record["pretrain"] |= {"loss": [0.5, 0.2, 0.1], "spread": spread}
            if record["method"] == "cass":  # DINO's runs predate the k-NN monitor
                record["pretrain"] |= KNN
    return records


KNN = {"knn_epochs": [1, 3], "knn": {"cnn": [0.3, 0.6], "vit": [0.3, 0.4]}, "knn_chance": 0.25,
       "knn_final": {"cnn": 0.6, "vit": 0.4}, "kept": {"cnn": "last", "vit": "last"},
       "knn_s": 1.5}  # fmt: skip


def pretrain_figure(records: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch) -> Figure:
    """The figure :func:`plots.pretrain_curves` draws for ``records`` (drawn, not written)."""
    drawn: list[Figure] = []
    monkeypatch.setattr(plots, "save", lambda figure, path: drawn.append(figure) or path)
    frame = records_frame(parse_record(r) for r in records)
    assert plots.pretrain_curves(pretrain_runs(frame), "t", Path("unused.png")) is not None
    return drawn[0]


def test_pretrain_curves_draw_each_nets_knn_per_scored_epoch_with_a_dotted_chance_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [r for r in grid_with_curves() if r["pretrain"] and r["label_fraction"] == 0.1]
    figure = pretrain_figure(records, monkeypatch)
    assert len(figure.axes) == 3 and figure.get_size_inches()[0] >= 15
    knn_axes = figure.axes[2]
    assert knn_axes.get_title() == "k-NN (validation, leave-one-out; ★ handed to fine-tuning)"
    stars = [line for line in knn_axes.lines if line.get_marker() == "*"]  # knn_final per net
    assert sorted((line.get_xdata()[0], line.get_ydata()[0]) for line in stars) == [
        (3.5, 0.4), (3.5, 0.4), (3.5, 0.6), (3.5, 0.6)
    ]  # fmt: skip
    curves = [line for line in knn_axes.lines if line.get_label() not in ("chance",)
              and line.get_marker() != "*"]  # fmt: skip
    # CASS seeds 0 and 1, both nets; DINO (4 runs, one net each) predates the monitor: no line
    assert sorted(line.get_label() for line in curves) == [
        "CASS s0 cnn", "CASS s0 vit", "CASS s1 cnn", "CASS s1 vit"
    ]  # fmt: skip
    assert all(list(line.get_xdata()) == [1, 3] for line in curves)
    cnn = next(line for line in curves if line.get_label() == "CASS s0 cnn")
    assert list(cnn.get_ydata()) == [0.3, 0.6] and cnn.get_linestyle() == "-"
    assert cnn.get_color() == plots._colour("cass")
    (chance,) = [line for line in knn_axes.lines if line.get_label() == "chance"]
    assert chance.get_linestyle() == ":" and list(chance.get_ydata()) == [0.25, 0.25]


def test_pretrain_curves_start_each_knn_line_at_epoch_0_the_starting_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [r for r in grid_with_curves() if r["pretrain"] and r["label_fraction"] == 0.1]
    for record in records:  # CASS seed 0 scored its starting weights; seed 1 is an older record
        if record["method"] == "cass" and record["seed"] == 0:
            knn = {"cnn": [0.2, 0.3, 0.6], "vit": [0.25, 0.3, 0.4]}
            record["pretrain"] |= {"knn_epochs": [0, 1, 3], "knn": knn}
    knn_axes = pretrain_figure(records, monkeypatch).axes[2]
    curves = {line.get_label(): line for line in knn_axes.lines}
    assert list(curves["CASS s0 cnn"].get_xdata()) == [0, 1, 3]
    assert list(curves["CASS s0 cnn"].get_ydata()) == [0.2, 0.3, 0.6]
    assert list(curves["CASS s1 vit"].get_xdata()) == [1, 3]  # before epoch 0: still drawn
    assert knn_axes.get_xlim()[0] <= 0 < knn_axes.get_xlim()[1]
    assert knn_axes.get_xlabel() == "pretraining epoch (0 = the starting weights)"


def test_pretrain_curves_of_runs_before_the_knn_monitor_leave_the_knn_panel_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [r for r in paper_grid() if r["pretrain"]][:2]
    assert len(pretrain_figure(records, monkeypatch).axes[2].lines) == 0


def test_plots_are_valid_pngs_and_their_paths_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path / "runs", grid_with_curves())
    assert main([str(tmp_path / "runs")]) == 0
    plot_dir = tmp_path / "runs" / "summary" / "plots"
    expected = {
        "paper_brain_mri_results.png", "paper_brain_mri_pretrain.png",
        "paper_brain_mri_finetune.png", "paper_isic2019_results.png",
        "paper_isic2019_finetune.png", "paper_timing.png",
    }  # fmt: skip
    # ISIC-2019 has no pretraining in this grid: no pretraining plot; and no temporary files left
    assert {p.name for p in plot_dir.iterdir()} == expected
    out = capsys.readouterr().out
    for name in expected:
        path = plot_dir / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300
        assert matplotlib.image.imread(path).ndim == 3
        assert str(path) in out
    assert out.index("wrote:") < out.index("paper_brain_mri_results.png")


def test_a_failing_plot_is_warned_about_and_the_tables_are_still_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plots, "results_bars", broken)
    monkeypatch.setattr(plots, "finetune_curves", broken)
    monkeypatch.setattr(plots, "pretrain_curves", broken)
    write_tree(tmp_path, paper_grid()[:2])
    assert main([str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "plot " in err and "_results.png not written: RuntimeError: no fonts" in err
    assert (tmp_path / "summary" / "results.md").exists()
