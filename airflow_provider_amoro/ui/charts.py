"""Inline SVG charts for the table page (no JavaScript library, nothing fetched at runtime)."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from airflow_provider_amoro.ui.models import HistogramBin, TableHistory

WIDTH = 760
HEIGHT = 240
PAD_L, PAD_R, PAD_T, PAD_B = 56, 70, 16, 36
MAX_DOTS = 300
"""Above this many snapshots the history chart draws only its lines."""


def _size(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _ticks(top: float, n: int = 4) -> list[float]:
    if top <= 0:
        return [0.0]
    return [top * i / n for i in range(n + 1)]


def history_chart(history: TableHistory) -> Markup:
    """File count (left axis, solid) and average file size (right axis, dashed) after each snapshot."""
    pts = history.points
    if not pts:
        return Markup('<p class="muted">No snapshot with file totals yet.</p>')
    inner_w = WIDTH - PAD_L - PAD_R
    inner_h = HEIGHT - PAD_T - PAD_B
    max_files = max(p.files for p in pts) or 1
    max_avg = max(p.avg_file_size for p in pts) or 1
    n = len(pts)

    def x(i: int) -> float:
        return PAD_L + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float, top: float) -> float:
        return PAD_T + inner_h - inner_h * v / top

    files_line = " ".join(f"{x(i):.1f},{y(p.files, max_files):.1f}" for i, p in enumerate(pts))
    avg_line = " ".join(f"{x(i):.1f},{y(p.avg_file_size, max_avg):.1f}" for i, p in enumerate(pts))
    parts = [
        f'<svg class="chart" id="history-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="File count and average file size over snapshots" xmlns="http://www.w3.org/2000/svg">'
    ]
    for t in _ticks(max_files):
        yy = y(t, max_files)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(
            f'<text class="axis files" x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end">{t:.0f}</text>'
        )
    for t in _ticks(max_avg):
        yy = y(t, max_avg)
        parts.append(
            f'<text class="axis avg" x="{WIDTH - PAD_R + 6}" y="{yy + 4:.1f}">{escape(_size(t))}</text>'
        )
    parts.append(f'<polyline class="series files" points="{files_line}"/>')
    parts.append(f'<polyline class="series avg" points="{avg_line}"/>')
    for i, p in enumerate(pts if n <= MAX_DOTS else ()):  # a dot per snapshot while they stay legible
        title = escape(
            f"snapshot {p.snapshot_id} ({p.operation or '?'}): {p.files} files "
            f"({p.data_files} data, {p.delete_files} delete), avg {_size(p.avg_file_size)}"
        )
        parts.append(
            f'<circle class="dot files" cx="{x(i):.1f}" cy="{y(p.files, max_files):.1f}" r="3">'
            f"<title>{title}</title></circle>"
        )
        parts.append(
            f'<circle class="dot avg" cx="{x(i):.1f}" cy="{y(p.avg_file_size, max_avg):.1f}" r="3">'
            f"<title>{title}</title></circle>"
        )
    parts.append(
        f'<text class="legend files" x="{PAD_L}" y="{HEIGHT - 8}">— file count</text>'
        f'<text class="legend avg" x="{PAD_L + 120}" y="{HEIGHT - 8}">- - average file size</text>'
        f'<text class="legend" x="{WIDTH - PAD_R}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{n} snapshot{'s' if n != 1 else ''}, oldest left</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram_chart(bins: list[HistogramBin]) -> Markup:
    """Bars of data file counts per size bin."""
    if not bins:
        return Markup('<p class="muted">No data files.</p>')
    inner_w = WIDTH - PAD_L - 16
    inner_h = HEIGHT - PAD_T - PAD_B - 10
    top = max(b.count for b in bins) or 1
    bw = inner_w / len(bins)
    parts = [
        f'<svg class="chart" id="histogram-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="Data file size histogram" xmlns="http://www.w3.org/2000/svg">'
    ]
    for t in _ticks(top):
        yy = PAD_T + inner_h - inner_h * t / top
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - 16}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(f'<text class="axis" x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end">{t:.0f}</text>')
    for i, b in enumerate(bins):
        h = inner_h * b.count / top
        bx = PAD_L + i * bw + 2
        by = PAD_T + inner_h - h
        parts.append(
            f'<rect class="bar" x="{bx:.1f}" y="{by:.1f}" width="{max(1.0, bw - 4):.1f}" height="{h:.1f}">'
            f"<title>{escape(b.label)}: {b.count} files, {escape(_size(b.bytes))}</title></rect>"
        )
        parts.append(
            f'<text class="axis" x="{bx + (bw - 4) / 2:.1f}" y="{PAD_T + inner_h + 14:.1f}" '
            f'text-anchor="middle" font-size="9">{escape(b.label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
