"""Report figures: matplotlib drawn to SVG, returned as a string to embed inline in the HTML page.

Two figure kinds:

* :func:`snr_figure` -- a metric against SNR: one line per :class:`Series` (with an optional CI
  band), horizontal :class:`Reference` lines (e.g. the clean score, with its CI band), round ticks,
  axis titles with units, the y range clamped to the metric's range (UAR 0-100 %, CCC <= 1,
  RMSE >= 0);
* :func:`scatter_figure` -- :class:`Point` s (e.g. SER change against a quality-measure change)
  with an optional least-squares line and a dashed y = 0 line.

Values are given in the **stored units** of ``metric`` (UAR and other shares as fractions 0-1, CCC
raw, dB as dB); the figure converts them for display with :data:`AXES` (UAR is drawn in %). A
published UAR of 72.34 % is therefore passed as 0.7234. Unknown metrics are drawn as given,
unclamped.

Example (one paper table: ours against the paper's values, per condition)::

    svg = snr_figure(
        [Series("noisy (ours)", snrs, ours_noisy, lo, hi),
         Series("noisy (paper)", snrs, paper_noisy, style="dashed", color="#1f77b4"),
         Series("enhanced (ours)", snrs, ours_enh, lo_e, hi_e, color="#d62728"),
         Series("enhanced (paper)", snrs, paper_enh, style="dashed", color="#d62728")],
        metric="uar", title="Table 5 · EMO-DB · eGeMAPS",
        references=[Reference("clean (ours)", 0.61, 0.58, 0.64),
                    Reference("clean (paper)", 0.6104, style="dotted")])

The output is deterministic: identical input gives byte-identical SVG (fixed ``svg.hashsalt``,
no date in the metadata, element ids prefixed with a hash of the figure itself so several figures
in one page never share an id). Text is escaped by matplotlib's SVG writer; ``$`` is escaped so
labels are never read as mathtext. Inline-SVG conventions for the page: no XML prolog, no
``xmlns`` URLs, ``href`` instead of ``xlink:href``, ``<text>`` elements (not glyph paths), so
tests and readers can read the tick labels and axis titles. The root ``<svg>`` carries
``class`` (``css_class``), ``role="img"``, ``aria-label`` and a ``<title>``.

matplotlib is imported only when a figure is drawn (``bench --help`` does not import it), and
only its object-oriented API is used (no pyplot, no GUI backend, no global state: the style is
applied with ``rc_context``).
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["AXES", "Axis", "PALETTE", "Point", "Reference", "Series", "scatter_figure", "snr_figure"]

#: colours used in turn for series without an explicit colour (matplotlib's tab10)
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
STYLES = {"solid": "-", "dashed": "--", "dotted": ":", "dashdot": "-."}
#: matplotlib settings of every figure (applied with rc_context, never globally)
RC = {
    "svg.fonttype": "none",  # <text> elements: searchable, selectable, testable
    "svg.hashsalt": "ser-bench",  # fixed clip-path / marker ids -> byte-identical output
    "svg.image_inline": True,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "sans-serif"],
    "font.size": 10.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "legend.fontsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.formatter.useoffset": False,  # never "+1e3" offsets
    "axes.formatter.limits": (-5, 6),  # no scientific notation for report-sized numbers
    "axes.unicode_minus": True,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "savefig.facecolor": "white",
}


@dataclass(frozen=True)
class Axis:
    """How a metric is shown on an axis: title (with unit), display scale, and the range of
    possible values in display units (None = unbounded)."""

    title: str
    scale: float = 1.0
    lo: float | None = None
    hi: float | None = None


#: metric name -> axis (display units). Unknown metrics: title = name, no scaling, no clamp.
AXES: dict[str, Axis] = {
    "uar": Axis("UAR (%)", 100.0, 0.0, 100.0),
    "accuracy": Axis("accuracy (%)", 100.0, 0.0, 100.0),
    "ccc": Axis("CCC", 1.0, -1.0, 1.0),
    "pesq": Axis("PESQ (MOS-LQO)", 1.0, -0.5, 4.64),
    "stoi": Axis("STOI", 1.0, 0.0, 1.0),
    "si_sdr": Axis("SI-SDR (dB)"),
    "si_sdr_i": Axis("ΔSI-SDR (dB)"),
    "snr": Axis("SNR (dB)"),
    "snr_i": Axis("ΔSNR (dB)"),
    "f0_rmse": Axis("F0 RMSE (semitones)", 1.0, 0.0, None),
    "f0_corr": Axis("F0 correlation r", 1.0, -1.0, 1.0),
    "vuv_error": Axis("voicing error (share of frames)", 1.0, 0.0, 1.0),
    "loudness_corr": Axis("loudness correlation r", 1.0, -1.0, 1.0),
    "hnr_rmse": Axis("HNR RMSE (dB)", 1.0, 0.0, None),
    "alpha_corr": Axis("α-ratio correlation r", 1.0, -1.0, 1.0),
    "egemaps_dist": Axis("eGeMAPS distance (RMS z)", 1.0, 0.0, None),
}


def axis_for(metric: str | None) -> Axis:
    """The :class:`Axis` of ``metric`` (a neutral one for unknown or None)."""
    return AXES.get(metric or "", Axis(metric or ""))


@dataclass(frozen=True)
class Series:
    """One line of an SNR figure. ``y``, ``lo``, ``hi`` in the metric's stored units; None/NaN =
    no value (the line breaks there). ``lo``/``hi`` (both or neither) draw a CI band.
    ``style``: "solid" | "dashed" | "dotted" | "dashdot" (use "dashed" for published values).
    ``color`` None takes the next palette colour. ``tooltip`` is shown on hover."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    lo: Sequence[float | None] | None = None
    hi: Sequence[float | None] | None = None
    style: str = "solid"
    color: str | None = None
    marker: str = "o"
    tooltip: str = ""


@dataclass(frozen=True)
class Reference:
    """A horizontal line across an SNR figure (e.g. the clean score), with an optional CI band."""

    label: str
    y: float
    lo: float | None = None
    hi: float | None = None
    style: str = "dashed"
    color: str = "#555555"
    tooltip: str = ""


@dataclass(frozen=True)
class Point:
    """One scatter point (display units are the caller's: scatter axes are not scaled)."""

    x: float
    y: float
    group: str = ""  # legend entry; points of a group share a colour
    tooltip: str = ""


# ----------------------------------------------------------------------------- figures


def snr_figure(series: Sequence[Series], *, metric: str | None = None, ylabel: str | None = None,
               title: str = "", references: Sequence[Reference] = (), xlabel: str = "SNR (dB)",
               size: tuple[float, float] = (6.0, 3.3), legend: str = "right", css_class: str = "chart",
               description: str = "") -> str:
    """A metric against SNR as an inline SVG string ("" when there is nothing to draw).

    ``metric`` picks the display scale, the y-axis title (``ylabel`` overrides it) and the range
    the y axis is clamped to (see :data:`AXES`). ``references`` are horizontal lines. ``legend``:
    "right" (outside the axes), "below" or "none". ``size`` in inches (1 in = 72 SVG units).
    """
    ax_info = axis_for(metric)
    k = ax_info.scale
    drawn = [s for s in series if any(_finite(v) for v in s.y)]
    refs = [r for r in references if _finite(r.y)]
    if not drawn and not refs:
        return ""
    xs_all = sorted({float(x) for s in drawn for x, v in zip(s.x, s.y) if _finite(v) and _finite(x)})
    with _style():
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, MaxNLocator

        fig = Figure(figsize=size)
        ax = fig.add_subplot()
        tips: dict[str, str] = {}
        colors = iter(PALETTE)
        for i, r in enumerate(refs):
            gid = f"ref-{i + 1}"
            ax.axhline(k * r.y, color=r.color, ls=STYLES.get(r.style, "--"), lw=1.3, label=_tex(r.label, LEGEND_WRAP),
                       gid=gid, zorder=2)
            x0 = xs_all[0] if xs_all else 0.0
            if _finite(r.lo) and _finite(r.hi):
                ax.axhspan(k * r.lo, k * r.hi, color=r.color, alpha=0.12, lw=0, zorder=1, gid=f"band-{gid}")
                ax.update_datalim([(x0, k * r.lo), (x0, k * r.hi)])  # axh* lines do not autoscale: the band must show
            else:
                ax.update_datalim([(x0, k * r.y)])
            tips[gid] = r.tooltip or _ref_tip(r, k, ax_info)
        for i, s in enumerate(drawn):
            color = s.color or next(colors, "#333333")
            x = [float(v) for v in s.x]
            y = [k * v if _finite(v) else math.nan for v in s.y]
            gid = f"series-{i + 1}"
            ax.plot(x, y, ls=STYLES.get(s.style, "-"), marker=s.marker or "", color=color,
                    label=_tex(s.label, LEGEND_WRAP), gid=gid, zorder=3, mfc="white" if s.style != "solid" else color)
            if s.lo is not None and s.hi is not None:
                lo = [k * v if _finite(v) else math.nan for v in s.lo]
                hi = [k * v if _finite(v) else math.nan for v in s.hi]
                ok = [_finite(a) and _finite(b) for a, b in zip(lo, hi)]
                if any(ok):
                    ax.fill_between(x, lo, hi, where=ok, color=color, alpha=0.15, lw=0, zorder=1, gid=f"band-{gid}")
            tips[gid] = s.tooltip or _series_tip(s, k, ax_info)
        ax.autoscale_view()
        _clamp_y(ax, ax_info)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        if xs_all and len(xs_all) <= 8 and all(float(x).is_integer() for x in xs_all):
            ax.xaxis.set_major_locator(FixedLocator(xs_all))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
        if len(xs_all) == 1:
            ax.set_xlim(xs_all[0] - 1, xs_all[0] + 1)
        ax.set_xlabel(_tex(xlabel, _chars(size[0], RC["axes.labelsize"])))
        ytitle = ylabel if ylabel is not None else ax_info.title
        ax.set_ylabel(_tex(ytitle, _chars(size[1], RC["axes.labelsize"])))
        if title:
            ax.set_title(_tex(title, _chars(size[0], RC["axes.titlesize"])), loc="left", gid="title")
        _legend(ax, legend)
        return _to_svg(fig, ax, css_class=css_class, label=title or ax_info.title, description=description,
                       tips=tips)


def scatter_figure(points: Sequence[Point], *, xlabel: str, ylabel: str, title: str = "",
                   colors: dict[str, str] | None = None, fit: bool = True, zero_line: bool = True,
                   size: tuple[float, float] = (4.4, 3.2), legend: str = "none", css_class: str = "chart scatter",
                   description: str = "") -> str:
    """Points with an optional least-squares line and dashed y = 0 line, as an inline SVG string
    ("" with fewer than 2 finite points). ``colors`` maps a point's group to its colour (palette
    order otherwise). Each point is its own element with its tooltip."""
    pts = [p for p in points if _finite(p.x) and _finite(p.y)]
    if len(pts) < 2:
        return ""
    groups = list(dict.fromkeys(p.group for p in pts))
    cmap = {g: (colors or {}).get(g) or PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    with _style():
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        fig = Figure(figsize=size)
        ax = fig.add_subplot()
        tips: dict[str, str] = {}
        if zero_line:
            ax.axhline(0.0, color="#999999", ls="--", lw=0.8, zorder=1)
        xs = [float(p.x) for p in pts]
        ys = [float(p.y) for p in pts]
        if fit and len(set(xs)) > 1:
            import numpy as np

            slope, icept = np.polyfit(xs, ys, 1)
            xa, xb = min(xs), max(xs)
            ax.plot([xa, xb], [slope * xa + icept, slope * xb + icept], color="#888888", lw=1, zorder=2,
                    gid="fit", label="least-squares line")
            tips["fit"] = f"least-squares line: slope {_num(slope)}"
        seen: set[str] = set()
        for i, p in enumerate(pts):
            gid = f"pt-{i + 1}"
            label = _tex(p.group, LEGEND_WRAP) if p.group and p.group not in seen else None
            seen.add(p.group)
            ax.plot([p.x], [p.y], ls="", marker="o", ms=5, color=cmap[p.group], alpha=0.85, gid=gid, label=label,
                    zorder=3)
            tips[gid] = p.tooltip or f"{p.group}: ({_num(p.x)}, {_num(p.y)})"
        for a in (ax.xaxis, ax.yaxis):
            a.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        ax.set_xlabel(_tex(xlabel, _chars(size[0], RC["axes.labelsize"])))
        ax.set_ylabel(_tex(ylabel, _chars(size[1], RC["axes.labelsize"])))
        if title:
            ax.set_title(_tex(title, _chars(size[0], RC["axes.titlesize"])), loc="left", gid="title")
        _legend(ax, legend)
        return _to_svg(fig, ax, css_class=css_class, label=title or ylabel, description=description, tips=tips)


# ----------------------------------------------------------------------------- helpers


LEGEND_WRAP = 30  # characters per legend line


def _chars(inches: float, fontsize: float) -> int:
    """About how many characters of ``fontsize`` fit in ``inches``."""
    return max(12, int(inches * 72 / (0.6 * fontsize)))


def _finite(v: object) -> bool:
    try:
        return v is not None and math.isfinite(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _num(v: float) -> str:
    s = f"{v:.3g}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _tex(s: str, width: int = 0) -> str:
    """Text for matplotlib: wrapped at ``width`` characters (0: not wrapped; long titles and legend
    entries would otherwise widen the figure), ``$`` escaped so it is never parsed as mathtext."""
    s = str(s)
    if width and len(s) > width:
        s = textwrap.fill(s, width, max_lines=4, placeholder=" …")
    return s.replace("$", r"\$")


def _series_tip(s: Series, k: float, a: Axis) -> str:
    unit = " %" if a.scale == 100 else ""
    pts = []
    for j, (x, v) in enumerate(zip(s.x, s.y)):
        if not _finite(v):
            continue
        t = f"{float(x):g} dB: {_num(k * float(v))}{unit}"
        if s.lo is not None and s.hi is not None and _finite(s.lo[j]) and _finite(s.hi[j]):
            t += f" [{_num(k * float(s.lo[j]))}, {_num(k * float(s.hi[j]))}]"
        pts.append(t)
    return f"{s.label}: " + "; ".join(pts)


def _ref_tip(r: Reference, k: float, a: Axis) -> str:
    unit = " %" if a.scale == 100 else ""
    ci = f" [{_num(k * r.lo)}, {_num(k * r.hi)}]" if _finite(r.lo) and _finite(r.hi) else ""
    return f"{r.label}: {_num(k * r.y)}{unit}{ci}"


class _style:
    """rc_context with :data:`RC` (imports matplotlib on entry)."""

    def __enter__(self) -> None:
        import matplotlib

        self._ctx = matplotlib.rc_context(RC)
        self._ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _clamp_y(ax: object, a: Axis) -> None:
    """Keep the autoscaled y range inside the metric's possible values."""
    lo, hi = ax.get_ylim()  # type: ignore[attr-defined]
    if a.lo is not None:
        lo = max(lo, a.lo)
    if a.hi is not None:
        hi = min(hi, a.hi)
    if hi <= lo:  # a single value at the bound
        span = (abs(hi) or 1.0) * 0.05
        lo, hi = (lo - span, hi) if a.hi is not None and hi >= a.hi else (lo, hi + span)
    ax.set_ylim(lo, hi)  # type: ignore[attr-defined]


def _legend(ax: object, where: str) -> None:
    handles, labels = ax.get_legend_handles_labels()  # type: ignore[attr-defined]
    if where == "none" or not handles:
        return
    if where == "below":
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22),  # type: ignore[attr-defined]
                  ncols=min(3, len(handles)), frameon=False)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,  # type: ignore[attr-defined]
                  borderaxespad=0.0)


_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_META = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')
_TAG = re.compile(r"<[^>]+>")
_SIZE = re.compile(r'\s(width|height)="([\d.]+)pt"')


def _to_svg(fig: object, ax: object, *, css_class: str, label: str, description: str, tips: dict[str, str]) -> str:
    """Save ``fig`` as inline-SVG text (see the module docstring). Axis titles and the figure title
    get the ids ``xlabel`` / ``ylabel`` / ``title`` (prefixed); the root ``<svg>`` carries the y
    range shown as ``data-ymin`` / ``data-ymax`` (display units)."""
    ax.xaxis.label.set_gid("xlabel")  # type: ignore[attr-defined]
    ax.yaxis.label.set_gid("ylabel")  # type: ignore[attr-defined]
    ymin, ymax = ax.get_ylim()  # type: ignore[attr-defined]
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.06,  # type: ignore[attr-defined]
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = _PROLOG.sub("", svg, count=1)
    svg = _META.sub("", svg)
    svg = _XMLNS.sub("", svg)
    svg = svg.replace("xlink:href=", "href=")
    for gid, tip in tips.items():  # hover text for lines and points
        cls = gid.split("-")[0]
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}" class="{cls}"><title>{escape(tip)}</title>', 1)
    prefix = "f" + hashlib.sha256(svg.encode()).hexdigest()[:10]

    def ids(tag: re.Match[str]) -> str:  # inside tags only: a label's text is never rewritten
        t = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', tag.group(0))
        return _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", t)

    svg = _TAG.sub(ids, svg)
    # pt -> px sizes (1 pt = 1 SVG unit here), so the page shows the figure at its viewBox scale
    svg = _SIZE.sub(lambda m: f' {m.group(1)}="{float(m.group(2)):.0f}"', svg, count=2)
    head = (f'<svg class="{escape(css_class)}" role="img" aria-label="{escape(label)}" '
            f'data-ymin="{_num(ymin)}" data-ymax="{_num(ymax)}"')
    svg = svg.replace("<svg", head, 1)
    end = svg.index(">", svg.index("<svg")) + 1
    desc = f"<desc>{escape(description)}</desc>" if description else ""
    svg = svg[:end] + f"<title>{escape(label)}</title>" + desc + svg[end:]
    return svg.strip() + "\n"

