"""The paper view's figures: one SVG per table and feature set, ours (95 % bands) against the
paper's values per SNR and condition (:func:`figures_of`).
"""
from __future__ import annotations

from .paper_types import PaperTable, Row, _scale


# ----------------------------------------------------------------------------- figures

#: colours per condition (ours solid with its interval band, the paper's dashed in the same colour)
CONDITION_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
SHADES = [["#6baed6", "#2171b5", "#08306b"], ["#fb6a4a", "#cb181d", "#67000d"], ["#74c476", "#238b45", "#00441b"]]


def _stored(v: float | None, metric: str) -> float | None:
    """Paper units -> the figures API's stored units (UAR as a fraction)."""
    return None if v is None else v / _scale(metric)


def _paper_name(kind: str) -> str:
    return "enhanced, ResNet" if kind == "enhanced" else kind


def figures_of(t: PaperTable) -> list[str]:
    """One SVG per feature set: ours (95 % bands) against the paper's values, per SNR and condition."""
    from .figures import Reference, Series, snr_figure

    m = t.metric
    out = []
    for features in dict.fromkeys(r.features for r in t.rows):
        rows = [r for r in t.rows if r.features == features]
        clean = next(r for r in rows if r.kind == "clean")
        refs = []
        if clean.ours.value is not None:
            refs.append(Reference("clean (ours)", _stored(clean.ours.value, m), _stored(clean.ours.lo, m),
                                  _stored(clean.ours.hi, m), style="solid", color="#555555"))
        if clean.paper is not None:
            refs.append(Reference("clean (paper)", _stored(clean.paper, m), style="dashed", color="#555555"))
        series: list[Series] = []
        drawn: set = set()
        conds = list(dict.fromkeys(r.condition for r in rows if r.kind != "clean"))
        if t.curves.get(features):  # a table of means: ours per SNR, the paper's means as lines
            for i, cond in enumerate(conds):
                color = CONDITION_COLORS[i % len(CONDITION_COLORS)]
                pts = t.curves[features].get(cond, [])
                series.append(Series(f"{cond} (ours)", [s for s, _ in pts], [_stored(o.value, m) for _, o in pts],
                                     [_stored(o.lo, m) for _, o in pts], [_stored(o.hi, m) for _, o in pts],
                                     color=color))
                mean_row = next(r for r in rows if r.condition == cond)
                if mean_row.paper is not None and mean_row.kind not in drawn:  # the paper's enhanced: once
                    drawn.add(mean_row.kind)
                    refs.append(Reference(f"{_paper_name(mean_row.kind)}, mean (paper)", _stored(mean_row.paper, m),
                                          style="dotted", color=color))
            title = f"{t.label} · {t.corpus} ({t.dataset}) · {features}: ours per SNR, the paper's means"
        else:
            groups: dict[tuple[str, float | None], list[Row]] = {}
            for r in rows:
                if r.kind != "clean" and r.snr_value is not None:
                    groups.setdefault((r.condition, r.train_snr), []).append(r)
            trains = sorted({tr for _, tr in groups if tr is not None})
            for i, ((cond, train), g) in enumerate(groups.items()):
                if train is None:
                    color = CONDITION_COLORS[conds.index(cond) % len(CONDITION_COLORS)]
                else:  # multi-SNR: blues for noisy, reds/greens for enhanced; darker = higher train SNR
                    shades = SHADES[min(conds.index(cond), len(SHADES) - 1)]
                    color = shades[min(trains.index(train), len(shades) - 1)]
                name = cond if train is None else f"{cond}, train {train:g} dB"
                x = [r.snr_value for r in g]
                series.append(Series(f"{name} (ours)", x, [_stored(r.ours.value, m) for r in g],
                                     [_stored(r.ours.lo, m) for r in g], [_stored(r.ours.hi, m) for r in g],
                                     color=color))
                kind = g[0].kind
                if (kind, train) not in drawn and any(r.paper is not None for r in g):  # the paper's enhanced: once
                    drawn.add((kind, train))
                    pname = _paper_name(kind) + ("" if train is None else f", train {train:g} dB")
                    series.append(Series(f"{pname} (paper)", x, [_stored(r.paper, m) for r in g], style="dashed",
                                         color=color, marker="s"))
            title = f"{t.label} · {t.corpus} ({t.dataset}) · {features}"
        xlabel = "test SNR (dB)" if t.id == "table6" else "SNR (dB)"
        svg = snr_figure(series, metric=m, title=title, references=refs, xlabel=xlabel, size=(6.2, 3.0),
                         css_class="chart paper-figure")
        if svg:
            out.append(svg)
    return out
