"""A dependency-free SVG scatter plot for the sweeps' figures (analyze.py, analyze_claim2.py)."""

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#000000", "#17becf", "#bcbd22"]


def scatter(series, x_label, y_label, guides=()):
    """series: [(name, [(x, y, y_err or 0), ...])], one colour each, named in a legend on the right;
    guides: [(name, [(x, y), ...])], dashed polylines (e.g. a predicted curve, a baseline's level),
    coloured after the series."""
    w, h, pad, legend_w = 640, 440, 60, 150
    pts = [p for _, ps in series for p in ps]
    xs = [p[0] for p in pts] + [x for _, g in guides for x, _ in g]
    ys = [p[1] + s * p[2] for p in pts for s in (-1, 1)] + [y for _, g in guides for _, y in g]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    px = lambda v: pad + (v - x0) / (x1 - x0) * (w - 1.5 * pad)
    py = lambda v: h - pad - (v - y0) / (y1 - y0) * (h - 1.5 * pad)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + legend_w}" height="{h}" font-family="sans-serif" '
           f'font-size="12">',
           f'<rect width="{w + legend_w}" height="{h}" fill="white"/>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad / 2}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{pad}" y2="{pad / 2}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">{x_label}</text>',
           f'<text x="15" y="{h / 2}" text-anchor="middle" transform="rotate(-90 15 {h / 2})">{y_label}</text>']
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{px(xv):.1f}" y="{h - pad + 16}" text-anchor="middle">{xv:.3g}</text>')
        out.append(f'<text x="{pad - 5}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
    legend = [(name, "dot") for name, _ in series] + [(name, "dash") for name, _ in guides]
    for i, (name, ps) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        for x, y, e in ps:
            if e:
                out.append(f'<line x1="{px(x):.1f}" y1="{py(y - e):.1f}" x2="{px(x):.1f}" y2="{py(y + e):.1f}" '
                           f'stroke="{c}"/>')
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{c}" fill-opacity="0.75"/>')
    for i, (name, g) in enumerate(guides):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in g)
        c = COLORS[(len(series) + i) % len(COLORS)]
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-dasharray="5,4"/>')
    for i, (name, kind) in enumerate(legend):
        y, c = pad / 2 + 16 * i, COLORS[i % len(COLORS)]
        mark = (f'<circle cx="{w + 10}" cy="{y}" r="4" fill="{c}"/>' if kind == "dot" else
                f'<line x1="{w + 4}" y1="{y}" x2="{w + 16}" y2="{y}" stroke="{c}" stroke-dasharray="3,2"/>')
        out.append(mark + f'<text x="{w + 20}" y="{y + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
