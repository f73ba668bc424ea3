"""The explorer's views (tables from the points frame) and its widget wiring; seed intervals."""

import math

import pandas as pd
import pytest

from xlcore.analysis.summary import seed_intervals
from xlcore.explorer import explorer, options, view_html, view_table


def _points():
    rows = []
    for pair in ("en-de", "en-ru"):
        for seed in (1, 2):
            for lang, d, a in (("de", 0.10, 0.02), ("ru", 0.05, -0.01), ("zh", 0.01, 0.00)):
                for layer in (0, 1):
                    for metric in ("cos_pairs", "cos"):
                        rows.append(
                            dict(
                                stage="aligned",
                                pair=pair,
                                task="pos",
                                seed=seed,
                                lang=lang,
                                layer=layer,
                                metric=metric,
                                delta=d * (seed + layer),
                                delta_accuracy=a * seed,
                            )
                        )
    rows.append(
        dict(
            stage="finetuned",
            pair="en-de",
            task="pos",
            seed=1,
            lang="de",
            layer=0,
            metric="cos_pairs",
            delta=9.0,
            delta_accuracy=9.0,
        )
    )
    return pd.DataFrame(rows)


def test_view_table_averages_over_seeds_and_ignores_other_stages():
    t = view_table(_points(), pair="en-de", task="pos", layer=1, metric="cos_pairs")
    de = t.set_index("lang").loc["de"]
    assert de["delta"] == pytest.approx((0.10 * 2 + 0.10 * 3) / 2)
    assert de["delta_accuracy"] == pytest.approx((0.02 + 0.04) / 2)
    assert de["seeds"] == 2
    assert list(t["lang"]) == ["de", "ru", "zh"]
    assert view_table(_points(), pair="en-fi", task="pos", layer=1, metric="cos").empty


def test_view_html_names_its_view_and_gives_r_only_with_three_languages():
    points = _points()
    t = view_table(points, pair="en-de", task="pos", layer=0, metric="cos_pairs")
    text = view_html(t, pair="en-de", task="pos", layer=0, metric="cos_pairs")
    assert 'data-view="en-de|pos|0|cos_pairs"' in text
    assert "+0.1500" in text and "+3.00" in text  # de: Δ mean(0.1, 0.2); Δacc mean(2, 4) points
    assert "Pearson r over these 3 languages" in text
    two = view_html(t.iloc[:2], pair="en-de", task="pos", layer=0, metric="cos_pairs")
    assert "Pearson" not in two
    empty = view_html(t.iloc[:0], pair="en-de", task="pos", layer=0, metric="cos_pairs")
    assert "no points" in empty


def test_explorer_links_every_control_to_its_stacks_and_recomputes_in_the_kernel():
    import ipywidgets as w

    points = _points()
    box = explorer(points)
    opts = options(points)
    assert opts == {
        "pair": ["en-de", "en-ru"],
        "task": ["pos"],
        "layer": [0, 1],
        "metric": ["cos_pairs", "cos"],
    }
    controls = [c for row in box.children[:2] for c in row.children]
    assert [c.description for c in controls] == ["Pair", "Task", "Layer", "Metric"]
    views = box.children[2]
    assert isinstance(views, w.Stack) and len(views.children) == 2
    leaves = views.children[1].children[0].children[1].children  # en-ru, pos, layer 1
    assert len(leaves) == 2 and 'data-view="en-ru|pos|1|cos"' in leaves[1].value
    # one link per stack: 1 (pair) + 2 (task) + 2 (layer) + 4 (metric)
    assert len(box._xl_links) == 1 + 2 + 2 + 4
    live = box.children[3]
    assert live.outputs == ()
    controls[2].index = 1
    assert len(live.outputs) == 1  # the kernel drew the recomputed view


def test_explorer_refuses_points_without_aligned_stage():
    with pytest.raises(ValueError, match="no aligned-stage points"):
        explorer(_points().assign(stage="finetuned"))


def test_seed_intervals_by_hand():
    ev = pd.DataFrame(
        dict(task="pos", regime="baseline", pair=None, lang="de", seed=[1, 2], accuracy=[0.8, 0.9])
    )
    row = seed_intervals(ev).iloc[0]
    assert row["seeds"] == 2 and row["mean"] == pytest.approx(85.0)
    half = 12.706204736 * math.sqrt(50.0) / math.sqrt(2)  # t(0.975, 1) · s / √n
    assert row["high"] - row["mean"] == pytest.approx(half, rel=1e-6)
    one = seed_intervals(ev.iloc[:1]).iloc[0]
    assert math.isnan(one["low"]) and math.isnan(one["high"])
