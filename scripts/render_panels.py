#!/usr/bin/env python3
"""Plots the panel series the observability test recorded (see scripts/render-panels).

usage: render_panels.py RECORDED_DIR OUT_DIR
Writes one PNG per dashboard, its panels in a grid as Grafana lays them out
two abreast: OUT_DIR/panels-<dashboard file>.png.
"""
import collections
import datetime
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

UNITS = {"ops": "per second", "reqps": "requests/s", "s": "seconds", "percentunit": "ratio", "short": ""}


def busiest(all_series, most=8):
    """The series worth a line: the `most` with the highest peaks, all-zero ones only if nothing else moved."""
    plotted = []
    for series in all_series:
        points = [(float(t), float(v)) for t, v in series["points"] if v not in ("NaN", "+Inf", "-Inf")]
        if points:
            plotted.append((max(abs(v) for _, v in points), series["legend"], series, points))
    plotted.sort(key=lambda p: (-p[0], p[1]))
    moving = [p for p in plotted if p[0] > 0]
    return [(series, points) for _, _, series, points in (moving or plotted)[:most]]


def main():
    recorded, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    boards = collections.OrderedDict()
    for path in sorted(recorded.glob("*.json")):
        board = path.stem.rsplit("-", 1)[0]
        boards.setdefault(board, []).append(json.loads(path.read_text()))
    for board, panels in boards.items():
        rows = (len(panels) + 1) // 2
        fig, axes = plt.subplots(rows, 2, figsize=(13, 3.2 * rows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, panel in zip(axes.flat, panels):
            ax.set_title(panel["title"], fontsize=10, loc="left")
            t0 = None
            for series, points in busiest(panel["series"]):
                t0 = t0 if t0 is not None else points[0][0]
                ax.plot([(t - t0) for t, _ in points], [v for _, v in points], label=series["legend"] or "value",
                        linewidth=1.2)
            ax.set_xlabel("seconds", fontsize=8)
            ax.set_ylabel(UNITS.get(panel["unit"], panel["unit"]), fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if panel["series"]:
                ax.legend(fontsize=7, loc="upper left", ncol=2)
        title = panels[0]["dashboard"]
        fig.suptitle(f"{title} — recorded {datetime.date.today().isoformat()} from a real Prometheus", fontsize=12)
        fig.tight_layout()
        target = out / f"panels-{board}.png"
        fig.savefig(target, dpi=90)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
