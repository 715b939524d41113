"""Charts drawn on the server: a bar chart as SVG, with its numbers as a table.

Used by the admin (the desk's growth chart, a post report's first hours). The SVG
has a <title> and an aria-label; the same numbers go into a table beside it
(templates/admin/newsletter/_chart.html renders both), so a screen reader or a
reader at phone width loses nothing. No inline style (the CSP forbids it): bars
carry a class per series, coloured in static/newsletter/charts.css for the light
and the dark scheme.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

# The drawing's own units; the SVG scales to its container's width (charts.css),
# so a phone shows it at about two thirds of this size.
WIDTH = 480
HEIGHT = 240
# Room for the row labels below; the value axis's room on the left is sized by
# its longest label (_svg): a fixed 44 cut 100000 to its last digits.
MARGIN_BOTTOM = 28
MARGIN_TOP = 10
MARGIN_RIGHT = 6
FONT_SIZE = 15
# A digit's width at most in the admin's fonts: 0.56 em in Segoe UI, Roboto and
# Arial, 0.64 em in DejaVu Sans (where Linux has none of those).
DIGIT_WIDTH = 0.64 * FONT_SIZE
# Between a value label and the plot, and the label and the drawing's edge.
LABEL_GAP = 4
# At most this many row labels under the bars: more would overlap at phone width.
MAX_ROW_LABELS = 6


@dataclass(frozen=True)
class Chart:
    """A chart's SVG and the same numbers for its table."""

    title: str
    series: list[str]
    rows: list[tuple[str, list[int]]]
    svg: SafeString

    @property
    def series_classes(self) -> list[tuple[str, str]]:
        """Each series' name and the CSS class of its bars (for a legend)."""
        return [(name, _series_class(i)) for i, name in enumerate(self.series)]


def bar_chart(
    *, title: str, series: Sequence[str], rows: Sequence[tuple[str, Sequence[int]]]
) -> Chart:
    """Grouped bars: one group per row (a week, an hour), one bar per series.

    rows are (label, values) with one value per series; values may be negative
    (a week's net loss), drawn below the zero line.
    """
    series = list(series)
    rows = [(str(label), [int(v) for v in values]) for label, values in rows]
    for label, values in rows:
        if len(values) != len(series):
            raise ValueError(
                f"Row {label!r} has {len(values)} values, not {len(series)}."
            )
    return Chart(title=title, series=series, rows=rows, svg=_svg(title, series, rows))


def _series_class(index: int) -> str:
    return f"chart-series-{index}"


def _svg(
    title: str, series: list[str], rows: list[tuple[str, list[int]]]
) -> SafeString:
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    values = [v for _, vs in rows for v in vs]
    top = max([0, *values])
    bottom = min([0, *values])
    if top == bottom:  # empty or all zero: a flat line at zero
        top = 1
    longest_label = max(len(str(value)) for value in (top, bottom))
    margin_left = ceil(longest_label * DIGIT_WIDTH) + 2 * LABEL_GAP
    plot_width = WIDTH - margin_left - MARGIN_RIGHT
    scale = plot_height / (top - bottom)
    zero_y = MARGIN_TOP + top * scale

    parts = [
        format_html(
            '<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}"'
            ' role="img" aria-label="{}" font-size="{}">',
            WIDTH,
            HEIGHT,
            title,
            FONT_SIZE,
        ),
        format_html("<title>{}</title>", title),
    ]
    # The value axis: a line at the highest value, zero and (if any) the lowest;
    # a label on each, but for one too close to zero's to be read apart.
    for value in sorted({top, 0, bottom}):
        y = zero_y - value * scale
        parts.append(
            format_html(
                '<line class="chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                margin_left,
                WIDTH - MARGIN_RIGHT,
                _n(y),
                _n(y),
            )
        )
        if value == 0 or abs(y - zero_y) >= FONT_SIZE:
            parts.append(
                format_html(
                    '<text class="chart-text" x="{}" y="{}" text-anchor="end"'
                    ' dominant-baseline="middle">{}</text>',
                    margin_left - LABEL_GAP,
                    _n(y),
                    value,
                )
            )
    if not rows:
        parts.append(
            format_html(
                '<text class="chart-text" x="{}" y="{}" text-anchor="middle">'
                "No figures yet</text>",
                margin_left + plot_width / 2,
                MARGIN_TOP + plot_height / 2,
            )
        )
    group_width = plot_width / max(len(rows), 1)
    bar_width = group_width * 0.8 / max(len(series), 1)
    label_every = ceil(len(rows) / MAX_ROW_LABELS) if rows else 1
    for r, (label, row_values) in enumerate(rows):
        group_x = margin_left + r * group_width + group_width * 0.1
        for s, value in enumerate(row_values):
            y = zero_y - max(value, 0) * scale
            parts.append(
                format_html(
                    '<rect class="chart-bar {}" x="{}" y="{}" width="{}" height="{}">'
                    "<title>{}, {}: {}</title></rect>",
                    _series_class(s),
                    _n(group_x + s * bar_width),
                    _n(y),
                    _n(bar_width),
                    _n(abs(value) * scale),
                    label,
                    series[s],
                    value,
                )
            )
        if r % label_every == 0:
            parts.append(
                format_html(
                    '<text class="chart-text" x="{}" y="{}" text-anchor="middle">'
                    "{}</text>",
                    _n(margin_left + (r + 0.5) * group_width),
                    HEIGHT - 8,
                    label,
                )
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 (every part went through format_html)


def _n(number: float) -> str:
    """A coordinate, short: the markup of a 72-hour chart stays small."""
    return escape(f"{number:.1f}".removesuffix(".0"))
