"""The server-drawn bar chart (newsletter/charts.py): accessible SVG and its table."""

import re
from xml.etree import ElementTree

import pytest
from django.template.loader import render_to_string

from newsletter.charts import bar_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # noqa: S314 (our own markup, not a stranger's)


def bars(svg: str) -> list[ElementTree.Element]:
    return parse(svg).findall(f"{SVG}rect")


def test_the_svg_has_a_title_and_an_aria_label():
    chart = bar_chart(title="Readers by week", series=["Joined"], rows=[("6 Oct", [3])])
    root = parse(chart.svg)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Readers by week"
    assert root.find(f"{SVG}title").text == "Readers by week"


def test_one_bar_per_value_each_titled_with_its_row_series_and_value():
    chart = bar_chart(
        title="Growth",
        series=["Joined", "Left", "Net"],
        rows=[("6 Oct", [5, 2, 3]), ("13 Oct", [1, 4, -3])],
    )
    rects = bars(chart.svg)
    assert len(rects) == 6
    titles = [rect.find(f"{SVG}title").text for rect in rects]
    assert titles[0] == "6 Oct, Joined: 5"
    assert titles[5] == "13 Oct, Net: -3"
    # Taller bar, bigger value; a negative value hangs below the zero line.
    heights = [float(rect.get("height")) for rect in rects]
    assert heights[0] > heights[1] > 0
    assert heights[5] == pytest.approx(heights[3] * 3, abs=0.3)
    zero_line = float(rects[2].get("y")) + heights[2]
    assert float(rects[5].get("y")) == pytest.approx(zero_line, abs=0.2)


def test_labels_and_title_are_escaped():
    chart = bar_chart(
        title="<script>alert(1)</script>",
        series=['"Joined" & <b>'],
        rows=[("<img src=x>", [1])],
    )
    assert "<script>" not in chart.svg
    assert "<img" not in chart.svg
    assert "&lt;img src=x&gt;" in chart.svg
    parse(chart.svg)  # still well-formed XML


def test_all_zero_values_draw_flat_bars_without_dividing_by_zero():
    chart = bar_chart(title="Quiet", series=["A", "B"], rows=[("w1", [0, 0])] * 3)
    rects = bars(chart.svg)
    assert len(rects) == 6
    assert {float(rect.get("height")) for rect in rects} == {0.0}


def test_empty_data_says_so_and_draws_no_bar():
    chart = bar_chart(title="Nothing yet", series=["A"], rows=[])
    assert bars(chart.svg) == []
    assert "No figures yet" in chart.svg
    html = render_to_string("admin/newsletter/_chart.html", {"chart": chart})
    assert "No figures yet." in html


def test_a_row_with_the_wrong_number_of_values_is_refused():
    with pytest.raises(ValueError, match="has 1 values, not 2"):
        bar_chart(title="T", series=["A", "B"], rows=[("w1", [1])])


def test_many_rows_label_only_some_so_they_do_not_overlap():
    rows = [(f"{hour}h", [hour]) for hour in range(72)]
    chart = bar_chart(title="First 72 hours", series=["People"], rows=rows)
    assert len(bars(chart.svg)) == 72
    row_labels = re.findall(r'text-anchor="middle">(\d+h)<', chart.svg)
    assert 0 < len(row_labels) <= 6


def test_the_table_beside_it_has_every_number_and_no_inline_style():
    chart = bar_chart(
        title="Growth", series=["Joined", "Left"], rows=[("6 Oct", [17, 4])]
    )
    html = render_to_string("admin/newsletter/_chart.html", {"chart": chart})
    assert '<th scope="col">Joined</th>' in html
    assert "<td>17</td><td>4</td>" in html
    assert "style=" not in html


def value_labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end" dominant-baseline="middle">(-?\d+)<', svg)


def test_the_value_axis_labels_the_top_zero_and_a_lowest_far_enough_from_zero():
    deep = bar_chart(title="T", series=["Net"], rows=[("a", [10]), ("b", [-10])])
    assert value_labels(deep.svg) == ["-10", "0", "10"]
    # -1 under 50 would sit on zero's label: its line stays, its label goes.
    shallow = bar_chart(title="T", series=["Net"], rows=[("a", [50]), ("b", [-1])])
    assert value_labels(shallow.svg) == ["0", "50"]
    assert shallow.svg.count('class="chart-grid"') == 3


@pytest.mark.parametrize("longest", [100_000, -250_000, 12_345_678])
def test_a_value_axis_label_of_many_digits_is_inside_the_drawing(longest):
    """With room for four digits, "100000 readers" lost its first digits off the
    chart's left edge."""
    chart = bar_chart(
        title="T", series=["Readers"], rows=[("a", [longest]), ("b", [3])]
    )
    root = parse(chart.svg)
    left, _, width, _ = map(float, root.get("viewBox").split())
    font_size = float(root.get("font-size"))
    [label] = [t for t in root.findall(f"{SVG}text") if t.text == str(longest)]
    # Anchored at its end; a digit of the admin's fonts is 0.56 em wide (Segoe
    # UI's, Roboto's, Arial's), 0.64 em (DejaVu Sans's, Linux's fallback).
    x = float(label.get("x"))
    assert x - len(label.text) * 0.64 * font_size >= left
    assert x <= left + width
