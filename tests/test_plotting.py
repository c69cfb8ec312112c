"""Figures and tables: the helpers the chapters import instead of pasting code."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from colddiff_lib.plotting import grid, html_table, save_grid, show_rows, to_numpy_image
from conftest import cell_source, notebook_cells


def test_images_in_minus_one_one_map_to_unit_range():
    x = torch.tensor([[[[-1.0, 0.0], [1.0, 3.0]]]])  # out-of-range values are clipped
    np.testing.assert_allclose(to_numpy_image(x[0]), [[0.0, 0.5], [1.0, 1.0]])
    colour = to_numpy_image(torch.zeros(3, 4, 5))
    assert colour.shape == (4, 5, 3)


def test_grid_tiles_and_save_grid_writes_a_png(tmp_path):
    images = torch.linspace(-1, 1, 6 * 8 * 8).reshape(6, 1, 8, 8)
    g = grid(images, nrow=3, padding=2)
    assert g.shape[:2] == (2 * 10 + 2, 3 * 10 + 2) and g.min() >= 0 and g.max() <= 1
    save_grid(images, tmp_path / "g.png", nrow=3)
    assert Image.open(tmp_path / "g.png").size == (32, 22)
    # no temporary file left behind
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_show_rows_has_one_row_per_tensor():
    fig = show_rows(
        [torch.zeros(3, 1, 8, 8), torch.zeros(2, 1, 8, 8)],
        labels=["a", "b"],
        titles=["x", "y", "z"],
    )
    assert len(fig.axes) == 6
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_html_table_escapes_its_cells():
    table = html_table(
        ["model", "note", "rmse"], [["mnist-blur", "<b>&", "0.211"]], title="A < B"
    )
    assert ">model</th>" in table.data and ">&lt;b&gt;&amp;</td>" in table.data
    assert "<p><b>A &lt; B</b></p>" in table.data
    # numbers align right
    assert 'text-align: right; border-bottom: 1px solid #ddd;">0.211</td>' in table.data
    assert (
        'text-align: left; border-bottom: 1px solid #ddd;">mnist-blur</td>'
        in table.data
    )


def test_level_axis_has_integer_ticks_only():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from colddiff_lib.plotting import level_axis

    fig, ax = plt.subplots()
    ax.plot(range(1, 11), range(10))
    level_axis(ax, "level s", reverse=True)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[1] <= t <= ax.get_xlim()[0]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert ax.get_xlabel() == "level s" and ax.xaxis_inverted()
    plt.close(fig)


def test_chapter_4_level_axes_use_integer_ticks():
    from pathlib import Path

    cells = notebook_cells(Path(__file__).parents[1] / "book" / "04_sampling.ipynb")
    code = "".join(cell_source(c) for c in cells if c["cell_type"] == "code")
    assert 'set_xlabel("level' not in code and code.count("level_axis(ax,") >= 3


def test_sampling_step_diagram_shows_algorithm_2_landing_nearer_the_path():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from colddiff_lib.plotting import sampling_step_diagram

    points = sampling_step_diagram(s=4)
    target = points["D(x0, s-1)"]
    assert np.linalg.norm(points["Algorithm 2"] - target) < 0.25 * np.linalg.norm(
        points["Algorithm 1"] - target
    )
    plt.close("all")


def test_chapters_draw_the_samplers_in_the_same_colours():
    """Chapters 4 and 7 colour Algorithms 1 and 2 from plotting.ALGORITHM_COLOURS, never by hand."""
    from pathlib import Path

    book = Path(__file__).parents[1] / "book"
    for name in ("04_sampling.ipynb", "07_your_own_degradation.ipynb"):
        code = "".join(
            cell_source(c)
            for c in notebook_cells(book / name)
            if c["cell_type"] == "code"
        )
        assert (
            "ALGORITHM_COLOURS[" in code
            and "tab:red" not in code
            and "tab:blue" not in code
        ), name


def test_players_load_nothing_from_a_cdn_and_chapters_use_them():
    """level_player / animation_html: matplotlib's JavaScript player without its CDN stylesheet; no chapter
    calls to_jshtml directly."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from colddiff_lib.plotting import level_player

    html = level_player(
        [
            [torch.zeros(1, 8, 8), torch.zeros(3, 16, 16)],
            [torch.ones(1, 8, 8), torch.ones(3, 16, 16)],
        ],
        ["t = 0", "t = 1"],
        labels=["digit", "photo"],
    ).data
    assert "http://" not in html and "https://" not in html and 'class="fa' not in html
    assert 'type="range"' in html and html.count("data:image/jpeg") == 2
    with pytest.raises(ValueError, match="same length"):
        level_player([[torch.zeros(1, 8, 8)]], ["a", "b"])
    for path in sorted((Path(__file__).parents[1] / "book").glob("*.ipynb")):
        code = "".join(
            cell_source(c) for c in notebook_cells(path) if c["cell_type"] == "code"
        )
        assert ".to_jshtml(" not in code, path.name
