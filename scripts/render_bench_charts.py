#!/usr/bin/env python3
"""Draws a chart beside each throughput table of docs/benchmarks.md (see scripts/render-bench-charts).

usage: render_bench_charts.py BENCHMARKS_MD IMG_DIR

A throughput table is one whose header starts with
`| service | records/s | CPU s per million records | broker CPU s per million |`.
For each, a PNG with two panels: records/s, and CPU seconds per million records
(the service's and the broker's, stacked), medians with min-max whiskers.
A scaling table (`| service | partitions | records/s | ...`, from a run over several
partition counts) gets four panels of curves against partitions, one line per service:
records/s, the service's and the broker's CPU per million records, and connections
per process. The chart is linked on the line after the table, replacing the link a
previous run left there, so running it again after a new benchmark updates the pictures.
"""
import pathlib
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HEADER = "| service | records/s | CPU s per million records | broker CPU s per million |"
SCALING = "| service | partitions | records/s | CPU s per million records | broker CPU s per million |"
LINK = re.compile(r"^!\[[^\]]*\]\(img/bench-[^)]*\.png\)$")
CELL = re.compile(r"^\s*([\d,.]+)\s*(?:\(([\d,.]+)\s*[–-]\s*([\d,.]+)\))?\s*$")


def number(text):
    """Median, low and high of a cell such as `100,722 (91,642–109,802)`; None for `–`."""
    m = CELL.match(text)
    if not m:
        return None
    values = [float(g.replace(",", "")) for g in m.groups() if g is not None]
    return (values[0], values[1], values[2]) if len(values) == 3 else (values[0], values[0], values[0])


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "table"


def tables(lines):
    """(first line, last line, heading, caption, rows, scaling) of each throughput or scaling table."""
    heading, caption, i = "benchmarks", "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.strip() and not line.startswith("|"):
            caption = line.strip()
        scaling = line.startswith(SCALING)
        if line.startswith(HEADER) or scaling:
            start, rows = i, []
            i += 2  # the header and its |---| line
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if scaling:
                    # service, partitions, records/s, CPU, broker CPU, connections per process
                    # A footnote mark (e.g. " ¹") on a service stays in the table, not in the curve's name.
                    rows.append((cells[0].rstrip(" ¹²³*"), int(cells[1]), number(cells[2]), number(cells[3]), number(cells[4]),
                                 number(cells[5])))
                else:
                    rows.append((cells[0], number(cells[1]), number(cells[2]), number(cells[3])))
                i += 1
            yield start, i - 1, heading, caption, rows, scaling
            continue
        i += 1


def draw(rows, title, path):
    rows = [r for r in rows if r[1] and r[2] and r[3]]
    names = [r[0] for r in rows][::-1]
    y = range(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 1.6), sharey=True)

    def bars(ax, values, left_edge=None, **style):
        med = [v[0] for v in values][::-1]
        err = [[v[0] - v[1] for v in values][::-1], [v[2] - v[0] for v in values][::-1]]
        ax.barh(y, med, left=left_edge, xerr=err, capsize=3, **style)
        return med

    bars(left, [r[1] for r in rows], color="#3274d9")
    left.set_title("records/s (higher is better)")
    own = bars(right, [r[2] for r in rows], color="#3274d9", label="the service")
    bars(right, [r[3] for r in rows], left_edge=own, color="#ff9830", label="the broker")
    right.set_title("CPU s per million records (lower is better)")
    right.legend(loc="best", fontsize=8)
    left.set_yticks(list(y), names, fontsize=8)
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves(rows, title, path):
    services = []
    for r in rows:
        if r[0] not in services:
            services.append(r[0])
    panels = [
        (2, "records/s (higher is better)"),
        (3, "the service's CPU s per million records"),
        (4, "the broker's CPU s per million records"),
        (5, "connections to the broker per process"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    colors = plt.get_cmap("tab20").colors
    for ax, (column, name) in zip(axes.flat, panels):
        for n, service in enumerate(services):
            points = [(r[1], r[column]) for r in rows if r[0] == service and r[column]]
            if not points:
                continue
            xs = [p for p, _ in points]
            med = [v[0] for _, v in points]
            err = [[v[0] - v[1] for _, v in points], [v[2] - v[0] for _, v in points]]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=service, color=colors[n % len(colors)])
        ax.set_xscale("log")
        ax.set_xticks(sorted({r[1] for r in rows}), [str(p) for p in sorted({r[1] for r in rows})])
        ax.set_xlabel("partitions")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    md, img = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    img.mkdir(parents=True, exist_ok=True)
    lines = md.read_text().split("\n")
    found = list(tables(lines))
    seen = {}
    # From the last table up, so inserting a line keeps the earlier indices right.
    for start, end, heading, caption, rows, scaling in reversed(found):
        base = slug(heading)
        seen[base] = seen.get(base, 0) + 1
    counts = {}
    for start, end, heading, caption, rows, scaling in reversed(found):
        base = slug(heading)
        n = seen[base] - counts.get(base, 0)
        counts[base] = counts.get(base, 0) + 1
        name = f"bench-{base}" + (f"-{n}" if seen[base] > 1 else "") + ".png"
        short = caption and len(caption) < 60 and not caption.startswith("`")
        title = f"{heading}: {caption.rstrip(':')}" if short else heading
        (curves if scaling else draw)(rows, title, img / name)
        link = f"![{heading}](img/{name})"
        after = end + 1
        if after + 1 < len(lines) and lines[after] == "" and LINK.match(lines[after + 1]):
            lines[after + 1] = link
        else:
            lines[after:after] = ["", link]
        print(f"render-bench-charts: {img / name}")
    md.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
