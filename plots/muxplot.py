#!/usr/bin/env python3
"""muxplot: PNG plots for a muxlab results directory, from its CSV files alone.

Usage: muxplot.py DIR [--out DIR2]

Reads DIR/results.csv (one row per cell) and, when present, DIR/timeline.csv
(server samples over time), and writes DIR/plots/*.png (or DIR2/*.png):

  idle-scaling.png  M2-M5  CPU and syscalls per request vs connections
  fdset-bytes.png   M2-M3  fd-set bytes copied in and out per request, descriptors scanned per wake-up
  lt-vs-et.png      E1 E2 M7  extra reads under ET, the EPOLLOUT busy loop, lost requests
  emfile.png        E4     accept calls and CPU over time at the descriptor limit
  killers.png       K1-K4  A vs B: copy bytes, switches, mallocs, futex waits and CPU per request
  models.png        C7     throughput and p99 per model (c7-models, c7-multi)
  reactors.png      C6 C9  throughput vs event loops, and vs pool size per compute fraction
  herd.png          C3     wake-ups and accept calls per accepted connection, per accept mode

A plot whose rows are absent is skipped with one line on stderr. Empty CSV
cells are missing values, never 0. Rows that repeat the same parameters
(column `repeat`) are drawn as the median with min-max error bars.
Prints one line per PNG written. Exit status: 0 plots done (some may be
skipped); 1 nothing plotted (results.csv missing or without an identifying
column, output directory not writable); 2 bad arguments; 3 a plot failed to draw.
Run by `muxlab plot`; needs only python3 and matplotlib.
"""

import argparse
import csv
import math
import os
import statistics
import sys
import warnings
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
# Degenerate axes (all values 0, one point) are expected with sparse data; stderr is for our notes.
warnings.filterwarnings("ignore", category=UserWarning)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

REQUIRED_COLUMNS = ["experiment", "io", "connections", "status"]
TIMELINE_COLUMNS = ["cell", "experiment", "label", "t_s", "phase", "server_cpu_s", "accept_calls"]

IO_ORDER = ["select", "poll", "epoll-lt", "epoll-et"]
IO_COLOR = {"select": "#1f77b4", "poll": "#ff7f0e", "epoll-lt": "#2ca02c", "epoll-et": "#d62728"}
IO_MARKER = {"select": "s", "poll": "o", "epoll-lt": "^", "epoll-et": "v"}
LINE_STYLES = ["-", "--", ":", "-."]
EXTRA_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
PALETTE = ["#2ca02c", "#d62728", "#1f77b4", "#ff7f0e"] + EXTRA_COLORS
DPI = 120


class InputError(Exception):
    """results.csv is missing or cannot identify its rows: nothing can be plotted."""


# --- reading ------------------------------------------------------------------


def read_csv(path):
    """The header and the rows (dicts; a short row's absent fields are "")."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return [], []
        rows = []
        for record in reader:
            if not record or record == [""]:
                continue
            rows.append({name: (record[i] if i < len(record) else "") for i, name in enumerate(header)})
        return header, rows


def num(row, column):
    """The column as a float, or None when empty, absent or not a finite number."""
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def text(row, column):
    return (row.get(column) or "").strip()


def variant(row, column):
    """A column of the server variant in force (the server's ready message: copy, accept, compute_us, ...),
    or None where the row has none (an external server, or a results.csv from before those columns)."""
    return text(row, column) or None


def io_rank(io):
    return (IO_ORDER.index(io) if io in IO_ORDER else len(IO_ORDER), io)


def io_color(io, index=0):
    return IO_COLOR.get(io, EXTRA_COLORS[index % len(EXTRA_COLORS)])


def ok_rows(rows, predicate):
    return [r for r in rows if predicate(text(r, "experiment")) and text(r, "status") == "ok"]


def experiment_prefix(prefix):
    return lambda name: name.startswith(prefix)


def experiment_is(*names):
    return lambda name: name in names


# --- statistics over repeats --------------------------------------------------


def spread(rows, column):
    """(median, min, max) of the column over rows that have a value; None if none has."""
    values = [v for v in (num(r, column) for r in rows) if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def group(rows, key):
    """Rows grouped by key(row), in first-seen order."""
    groups = OrderedDict()
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def series_points(rows, x_column, y_column):
    """Sorted (x, median, min, max) over rows grouped by x; x and y missing values dropped."""
    points = []
    for x, members in group(rows, lambda r: num(r, x_column)).items():
        if x is None:
            continue
        s = spread(members, y_column)
        if s is not None:
            points.append((x,) + s)
    return sorted(points)


def error_bars(medians, lows, highs):
    return [[m - lo for m, lo in zip(medians, lows)], [hi - m for m, hi in zip(medians, highs)]]


def repeats_note(rows):
    passes = {text(r, "repeat") for r in rows if text(r, "repeat")}
    return f"median of {len(passes)} repeats, bars min-max" if len(passes) > 1 else ""


# --- figure furniture ---------------------------------------------------------


def distinct(rows, column):
    values = sorted({text(r, column) for r in rows if text(r, column)})
    return ", ".join(values) if values else "unknown"


def caption(fig, rows, extra=""):
    """The provenance line at the bottom: host, kernel, commit of the rows drawn."""
    line = f"host: {distinct(rows, 'host')}   kernel: {distinct(rows, 'kernel')}   commit: {distinct(rows, 'commit')}"
    if extra:
        line += "   |   " + extra
    fig.text(0.01, 0.012, line, fontsize=8, color="#444444", ha="left", va="bottom")


def panels_with_data(name, panels, rows):
    """The panels (draw functions) that have something to draw, each tried on a scratch figure
    first so a panel without data takes no space; the others are named in a note."""
    present = []
    for draw, experiments in panels:
        probe_fig, probe_ax = plt.subplots()
        has = draw(probe_ax, rows) is not None
        plt.close(probe_fig)
        if has:
            present.append(draw)
        else:
            note(f"{name}: panel without data left out: no ok rows with values for {experiments}")
    return present


def finish(fig, rows, path, extra="", right=1.0):
    """Caption, layout (`right`: the fraction of the width left of a figure legend), save, report."""
    caption(fig, rows, extra)
    fig.tight_layout(rect=(0, 0.04, right, 0.95))
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15)  # keeps outside legends whole
    plt.close(fig)
    print(f"wrote {path}", flush=True)


def note(message):
    print(message, file=sys.stderr, flush=True)


def no_data(ax, message):
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#666666")


def active_styles(rows):
    levels = sorted({v for v in (num(r, "active") for r in rows) if v is not None})
    return {level: LINE_STYLES[i % len(LINE_STYLES)] for i, level in enumerate(levels)}


def fmt_count(value):
    if value is None:
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g}k"
    if abs(value) >= 1e3:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def label_bars(ax, bars, values, tops=None):
    """Each bar's value above it, or above `tops` (the error bar's end) when given."""
    for i, (bar, value) in enumerate(zip(bars, values)):
        if value is None:
            continue
        top = max(bar.get_height(), tops[i]) if tops and tops[i] is not None else bar.get_height()
        ax.annotate(fmt_count(value), (bar.get_x() + bar.get_width() / 2, top),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=7)


# --- plot 1 and 2: idle scaling -----------------------------------------------


def draw_scaling_panel(ax, rows, column, styles, log_y):
    """One line per (io, active): median over repeats vs connections, min-max error bars.
    On a log y axis, series whose values are all 0 are listed in a note instead of drawn.
    Returns legend proxies for the series with values, in io order (empty: no values)."""
    handles, zeros = [], []
    by_series = group(rows, lambda r: (text(r, "io"), num(r, "active")))
    order = sorted(by_series, key=lambda k: (io_rank(k[0]), k[1] if k[1] is not None else -1))
    for i, (io, active) in enumerate(order):
        points = [p for p in series_points(by_series[(io, active)], "connections", column) if p[0] > 0]
        if not points:
            continue
        name = io if active is None else f"{io}, {active:g} active"
        color, style = io_color(io, i), styles.get(active, "-")
        if log_y:
            shown = [p for p in points if p[1] > 0]
            if not shown:
                zeros.append(name)
                handles.append(Line2D([], [], color=color, linestyle=style, marker=IO_MARKER.get(io, "o"),
                                      label=name))
                continue
            points = shown
        xs, med, lo, hi = zip(*points)
        lo = [max(v, m * 1e-3) if log_y else v for v, m in zip(lo, med)]
        ax.errorbar(xs, med, yerr=error_bars(med, lo, hi), color=color, linestyle=style,
                    marker=IO_MARKER.get(io, "o"), markersize=5, capsize=3, linewidth=1.5, label=name)
        handles.append(Line2D([], [], color=color, linestyle=style, marker=IO_MARKER.get(io, "o"), label=name))
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(True, which="major", alpha=0.3)
    if zeros:
        ax.text(0.02, 0.98, "0 at every size, not drawn on the log axis:\n" + "\n".join(zeros),
                transform=ax.transAxes, ha="left", va="top", fontsize=7.5,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#bbbbbb"})
    if not handles:
        no_data(ax, f"no values of {column}")
    return handles


LEGEND_RIGHT = 0.86  # panels take the figure's width left of this; the shared legend the rest


def scaling_legend(fig, *panel_handles):
    """One legend for the figure, right of the panels, naming every series of any panel once."""
    seen, handles = set(), []
    for handle in (h for hs in panel_handles for h in hs):
        if handle.get_label() not in seen:
            seen.add(handle.get_label())
            handles.append(handle)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(LEGEND_RIGHT, 0.5), fontsize=8,
               title="io, active connections", title_fontsize=8)


def plot_idle_scaling(rows, out):
    name = "idle-scaling.png"
    data = ok_rows(rows, experiment_prefix("idle-scaling"))
    if not data:
        return note(f"skipped {name}: no rows with status ok for experiments idle-scaling*")
    styles = active_styles(data)
    fig, (cpu, sys_ax) = plt.subplots(1, 2, figsize=(13, 5.5))
    fig.suptitle("M2-M5: cost per request vs idle connections (fixed number of active connections)", fontsize=13)
    a = draw_scaling_panel(cpu, data, "cpu_us_per_req", styles, log_y=False)
    cpu.set_title("server CPU per request")
    cpu.set_xlabel("connections (total, log scale)")
    cpu.set_ylabel("server CPU (µs / request)")
    b = draw_scaling_panel(sys_ax, data, "syscalls_per_req", styles, log_y=False)
    sys_ax.set_title("server syscalls per request")
    sys_ax.set_xlabel("connections (total, log scale)")
    sys_ax.set_ylabel("syscalls / request")
    if not (a or b):
        plt.close(fig)
        return note(f"skipped {name}: idle-scaling rows have no cpu_us_per_req or syscalls_per_req values")
    scaling_legend(fig, a, b)
    finish(fig, data, os.path.join(out, name), repeats_note(data), right=LEGEND_RIGHT)


def plot_fdset_bytes(rows, out):
    name = "fdset-bytes.png"
    data = ok_rows(rows, experiment_prefix("idle-scaling"))
    if not data:
        return note(f"skipped {name}: no rows with status ok for experiments idle-scaling*")
    styles = active_styles(data)
    fig, (copy_ax, scan_ax) = plt.subplots(1, 2, figsize=(13, 5.5))
    fig.suptitle("M2, M3: fd-set bytes copied and descriptors scanned vs connections", fontsize=13)
    a = draw_scaling_panel(copy_ax, data, "fdset_bytes_per_req", styles, log_y=True)
    # fdset_bytes_per_req is empty where no select/poll call was made: say so rather than drop the series.
    no_fdset = sorted({text(r, "io") for r in data if num(r, "fdset_bytes_per_req") is None
                       and num(r, "syscalls_per_req") is not None}, key=io_rank)
    if no_fdset:
        copy_ax.text(0.98, 0.02, "no select/poll calls, no fd-set copy:\n" + ", ".join(no_fdset),
                     transform=copy_ax.transAxes, ha="right", va="bottom", fontsize=7.5,
                     bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#bbbbbb"})
    copy_ax.set_title("M2: fd-set bytes copied in and out per request")
    copy_ax.set_xlabel("connections (total, log scale)")
    copy_ax.set_ylabel("fd-set bytes / request (log scale)")
    b = draw_scaling_panel(scan_ax, data, "scanned_per_wakeup", styles, log_y=True)
    scan_ax.set_title("M3: descriptors scanned in user space per wake-up")
    scan_ax.set_xlabel("connections (total, log scale)")
    scan_ax.set_ylabel("descriptors scanned / wake-up (log scale)")
    if not (a or b):
        plt.close(fig)
        return note(f"skipped {name}: idle-scaling rows have no fdset_bytes_per_req or scanned_per_wakeup values")
    scaling_legend(fig, a, b)
    finish(fig, data, os.path.join(out, name), repeats_note(data), right=LEGEND_RIGHT)


# --- plot 3: LT vs ET -----------------------------------------------------------


def variant_groups(rows, name_of):
    """Variant name -> rows (repeats of one variant), ordered by io then name."""
    groups = group(rows, name_of)
    return OrderedDict(sorted(groups.items(), key=lambda kv: (io_rank(text(kv[1][0], "io")), kv[0])))


def grouped_bars(ax, categories, series, log_scale=False):
    """Bars at categories x series; series = [(name, color, [(median, lo, hi) or None per category])]."""
    width = 0.8 / max(1, len(series))
    handles = []
    for i, (name, color, stats) in enumerate(series):
        xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
        med = [s[0] if s else 0 for s in stats]
        lo = [s[1] if s else 0 for s in stats]
        hi = [s[2] if s else 0 for s in stats]
        bars = ax.bar(xs, med, width * 0.92, yerr=error_bars(med, lo, hi), capsize=3, color=color, label=name,
                      error_kw={"elinewidth": 1, "ecolor": "#333333"})
        label_bars(ax, bars, [s[0] if s else None for s in stats], hi)
        handles.append(bars)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, fontsize=8)
    if log_scale:
        ax.set_yscale("symlog", linthresh=1)
    ax.grid(True, axis="y", alpha=0.3)
    return handles


def headroom(ax):
    """Room above the tallest bar for its value label and the legend (symlog: a factor, linear: a margin)."""
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 30 if ax.get_yscale() == "symlog" else top * 1.2)


def panel_extra_read(ax, rows):
    """(a) E2: per request, epoll_wait calls, reads, and reads that returned EAGAIN, LT vs ET."""
    data = ok_rows(rows, experiment_is("e2-et-extra-read"))
    metrics = [("epoll_wait_per_req", "epoll_wait calls"), ("reads_per_req", "reads"),
               ("eagain_reads_per_req", "reads returning EAGAIN")]
    variants = variant_groups(data, lambda r: text(r, "io"))
    series = []
    for i, (io, members) in enumerate(variants.items()):
        stats = [spread(members, column) for column, _ in metrics]
        if any(stats):
            series.append((io, io_color(io, i), stats))
    if not series:
        return None
    grouped_bars(ax, [label for _, label in metrics], series)
    headroom(ax)
    ax.set_title("(a) E2: calls per request, LT vs ET\n(e2-et-extra-read)", fontsize=10)
    ax.set_ylabel("calls / request")
    ax.legend(fontsize=8, title="io", title_fontsize=8)
    return data


def panel_epollout(ax, rows):
    """(b) E1: with no traffic, epoll_wait calls per second and server CPU per variant."""
    data = ok_rows(rows, experiment_is("e1-epollout"))

    def name_of(r):
        mode = variant(r, "epollout")
        return text(r, "io") + ("\nEPOLLOUT " + mode if mode else "")

    variants = variant_groups(data, name_of)
    calls = [spread(m, "mux_calls_per_s") for m in variants.values()]
    util = [spread(m, "server_cpu_util") for m in variants.values()]
    if not any(calls) and not any(util):
        return None
    names = list(variants)
    width = 0.38
    xs = range(len(names))
    med = [s[0] if s else 0 for s in calls]
    bars = ax.bar([x - width / 2 for x in xs], med, width,
                  yerr=error_bars(med, [s[1] if s else 0 for s in calls], [s[2] if s else 0 for s in calls]),
                  capsize=3, color="#4c72b0", error_kw={"elinewidth": 1})
    label_bars(ax, bars, [s[0] if s else None for s in calls])
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("epoll_wait calls / s (symlog scale)", color="#4c72b0")
    twin = ax.twinx()
    med = [s[0] if s else 0 for s in util]
    bars = twin.bar([x + width / 2 for x in xs], med, width,
                    yerr=error_bars(med, [s[1] if s else 0 for s in util], [s[2] if s else 0 for s in util]),
                    capsize=3, color="#dd8452", error_kw={"elinewidth": 1})
    label_bars(twin, bars, [s[0] if s else None for s in util])
    twin.set_ylim(0, max(1.05, max(med) * 1.15))
    twin.set_ylabel("server CPU utilisation (1.0 = one core)", color="#dd8452")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    headroom(ax)
    ax.set_title("(b) E1: epoll_wait rate and CPU with no traffic, per EPOLLOUT\nregistration (e1-epollout)", fontsize=10)
    ax.legend(handles=[Patch(color="#4c72b0", label="epoll_wait calls / s"),
                       Patch(color="#dd8452", label="CPU utilisation")], fontsize=8, loc="upper right")
    return data


def panel_lost_requests(ax, rows):
    """(c) E2, M7: requests completed and errors per variant when each readiness report reads 16 bytes once."""
    data = ok_rows(rows, experiment_is("e2-et-lazy-read", "m7-level-report"))

    def name_of(r):
        short = {"e2-et-lazy-read": "e2", "m7-level-report": "m7"}.get(text(r, "experiment"), text(r, "experiment"))
        mode = variant(r, "et_read")
        return f"{short}: {text(r, 'io')}" + (f"\n{mode}" if mode else "")

    variants = variant_groups(data, name_of)
    variants = OrderedDict(sorted(variants.items(), key=lambda kv: (text(kv[1][0], "experiment"),
                                                                   io_rank(text(kv[1][0], "io")), kv[0])))
    completed = [spread(m, "requests") for m in variants.values()]
    errors = [spread(m, "errors") for m in variants.values()]
    timeouts = [spread(m, "errors_timeout") for m in variants.values()]
    if not any(completed) and not any(errors):
        return None
    grouped_bars(ax, list(variants), [("requests completed", "#55a868", completed),
                                      ("errors", "#c44e52", errors),
                                      ("of which timeouts", "#8172b2", timeouts)], log_scale=True)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("count over the measured window (symlog scale)")
    ax.set_title("(c) E2, M7: requests completed vs errors, 16-byte reads\n"
                 "(e2-et-lazy-read, m7-level-report)", fontsize=10)
    headroom(ax)
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    return data


def plot_lt_vs_et(rows, out):
    name = "lt-vs-et.png"
    panels = [(panel_extra_read, "e2-et-extra-read"), (panel_epollout, "e1-epollout"),
              (panel_lost_requests, "e2-et-lazy-read, m7-level-report")]
    wanted = {"e2-et-extra-read", "e1-epollout", "e2-et-lazy-read", "m7-level-report"}
    if not ok_rows(rows, lambda e: e in wanted):
        return note(f"skipped {name}: no rows with status ok for experiments e1-epollout, e2-*, m7-level-report")
    present = panels_with_data(name, panels, rows)
    if not present:
        return note(f"skipped {name}: no values in the rows of experiments e1-epollout, e2-*, m7-level-report")
    fig, axes = plt.subplots(1, len(present), figsize=(6.2 * len(present), 6), squeeze=False)
    fig.suptitle("E1, E2, M7: level- vs edge-triggered epoll", fontsize=13)
    drawn_rows = []
    for draw, ax in zip(present, axes[0]):
        drawn_rows += draw(ax, rows)
    finish(fig, drawn_rows, os.path.join(out, name), repeats_note(drawn_rows))


# --- plot 4: EMFILE timeline --------------------------------------------------------


def rates(samples, column):
    """(t, rate) between consecutive samples of a cumulative column, at the later sample's time."""
    points, previous = [], None
    for s in samples:
        t, v = num(s, "t_s"), num(s, column)
        if t is None or v is None:
            continue
        if previous is not None and t > previous[0]:
            points.append((t, (v - previous[1]) / (t - previous[0])))
        previous = (t, v)
    return points


def short_label(label):
    """'io=epoll-lt server_args=[--fd-limit 64 --emfile none]' -> 'epoll-lt --fd-limit 64 --emfile none'."""
    words = []
    for part in label.replace("server_args=[", "").replace("]", "").split():
        words.append(part.split("=", 1)[1] if part.startswith("io=") else part)
    return " ".join(words)


def plot_emfile(rows, timeline_path, out):
    name = "emfile.png"
    if not os.path.exists(timeline_path):
        return note(f"skipped {name}: no timeline.csv in the results directory")
    header, samples = read_csv(timeline_path)
    missing = [c for c in TIMELINE_COLUMNS if c not in header]
    if missing:
        return note(f"skipped {name}: timeline.csv lacks column(s) {', '.join(missing)}")
    samples = [s for s in samples if text(s, "experiment") == "e4-emfile"]
    if not samples:
        return note(f"skipped {name}: no timeline rows for experiment e4-emfile")
    cells = group(samples, lambda s: text(s, "cell"))
    results = {text(r, "cell"): r for r in rows if text(r, "experiment") == "e4-emfile"}
    labels = [short_label(text(members[0], "label")) or f"cell {cell}" for cell, members in cells.items()]
    repeated = {l for l in labels if labels.count(l) > 1}

    fig, (acc_ax, cpu_ax) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    fig.suptitle("E4: accept at the descriptor limit (EMFILE): accept calls and CPU over time, per variant",
                 fontsize=12)
    windows, drawn, any_accepts = [], False, False
    order = sorted(cells.items(), key=lambda kv: (short_label(text(kv[1][0], "label")), kv[0]))
    for i, (cell, members) in enumerate(order):
        members = sorted(members, key=lambda s: num(s, "t_s") if num(s, "t_s") is not None else math.inf)
        base = short_label(text(members[0], "label")) or f"cell {cell}"
        legend = base + (f" (cell {cell})" if base in repeated else "")
        result = results.get(cell)
        if result is not None:
            served, established = num(result, "connections_served"), num(result, "connections_established")
            if served is not None or established is not None:
                legend += f"\nserved {fmt_count(served)} of {fmt_count(established)} established"
        color = PALETTE[i % len(PALETTE)]
        style = LINE_STYLES[i % len(LINE_STYLES)]
        accepts = rates(members, "accept_calls")
        cpu = rates(members, "server_cpu_s")
        if accepts:
            acc_ax.plot(*zip(*accepts), color=color, linestyle=style, marker=".", label=legend)
            drawn = any_accepts = True
        if cpu:
            cpu_ax.plot(*zip(*cpu), color=color, linestyle=style, marker=".", label=legend)
            drawn = True
        measured = [num(s, "t_s") for s in members if text(s, "phase") == "measure" and num(s, "t_s") is not None]
        if measured:
            windows.append((min(measured), max(measured)))
    if not drawn:
        plt.close(fig)
        return note(f"skipped {name}: e4-emfile timeline rows have fewer than two samples with t_s, "
                    "accept_calls and server_cpu_s")
    if not any_accepts:
        no_data(acc_ax, "no accept_calls values (kernel probes off?)")
    if windows:
        start = statistics.median(w[0] for w in windows)
        end = statistics.median(w[1] for w in windows)
        for ax in (acc_ax, cpu_ax):
            ax.axvspan(start, end, color="#999999", alpha=0.15, label="measured window (phase measure)")
    acc_ax.set_yscale("symlog", linthresh=1)
    acc_ax.set_ylim(bottom=0)
    acc_ax.set_ylabel("accept calls / s (symlog scale)")
    acc_ax.set_title("accept calls per second (Δ accept calls / Δ t)", fontsize=10)
    cpu_ax.set_ylim(0, max(1.05, cpu_ax.get_ylim()[1]))
    cpu_ax.set_ylabel("server CPU utilisation (1.0 = one core)")
    cpu_ax.set_xlabel("time since the load started (s)")
    cpu_ax.set_title("server CPU utilisation (Δ CPU time / Δ t)", fontsize=10)
    for ax in (acc_ax, cpu_ax):
        ax.grid(True, alpha=0.3)
    acc_ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  title="variant, clients served", title_fontsize=7.5)
    caption_rows = [results[c] for c in cells if c in results] or rows
    finish(fig, caption_rows, os.path.join(out, name),
           "timeline: one sample per interval, rates between consecutive samples")


# --- plot 5: the four killers ---------------------------------------------------------


def variant_stats(rows, name_of, order, columns):
    """Variant name -> [spread per column], for the names in `order` that have rows (in that order)."""
    groups = group(rows, name_of)
    return OrderedDict((name, [spread(groups[name], c) for c in columns]) for name in order if name in groups)


def killer_bars(ax, stats, index, color, unit_label, title):
    """One bar per variant (median, min-max bars) of column `index` of `stats`; False when no values."""
    names = [n for n, s in stats.items() if s[index] is not None]
    if not names:
        no_data(ax, "no values")
        ax.set_title(title, fontsize=9.5)
        return False
    values = [stats[n][index] for n in names]
    med = [v[0] for v in values]
    bars = ax.bar(range(len(names)), med, 0.6, color=color,
                  yerr=error_bars(med, [v[1] for v in values], [v[2] for v in values]), capsize=3,
                  error_kw={"elinewidth": 1, "ecolor": "#333333"})
    label_bars(ax, bars, med, [v[2] for v in values])
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel(unit_label)
    ax.set_title(title, fontsize=9.5)
    ax.grid(True, axis="y", alpha=0.3)
    headroom(ax)
    return True


KILLER_COPY = {"direct": 0, "staged": 1, "splice": 2}
K2_MODELS = [("k2-thread-per-connection", "thread per\nconnection"), ("k2-reactor", "reactor"),
             ("k2-reactor-pool", "reactor +\npool")]


def k4_panel(ax, rows, column, unit_label, title):
    """K4: bars per worker count, global-lock vs per-worker; False when no values."""
    workers = sorted({num(r, "workers") for r in rows if num(r, "workers") is not None})
    series = []
    for i, queue in enumerate(["global-lock", "per-worker"]):
        members = [r for r in rows if variant(r, "queue") == queue]
        stats = [spread([r for r in members if num(r, "workers") == w], column) for w in workers]
        if any(stats):
            series.append((queue, ["#c44e52", "#55a868"][i], stats))
    if not series:
        no_data(ax, "no values")
        ax.set_title(title, fontsize=9.5)
        return False
    grouped_bars(ax, [f"{w:g} worker{'s' if w != 1 else ''}" for w in workers], series)
    ax.set_ylabel(unit_label)
    ax.set_title(title, fontsize=9.5)
    headroom(ax)
    ax.legend(fontsize=7.5, title="--queue", title_fontsize=7.5, loc="upper left")
    return True


def plot_killers(rows, out):
    name = "killers.png"
    k1 = ok_rows(rows, experiment_is("k1-copies"))
    k2 = ok_rows(rows, experiment_is(*[e for e, _ in K2_MODELS]))
    k3 = ok_rows(rows, experiment_is("k3-alloc"))
    k4 = ok_rows(rows, experiment_is("k4-locks"))
    if not (k1 or k2 or k3 or k4):
        return note(f"skipped {name}: no rows with status ok for experiments k1-copies, k2-*, k3-alloc, k4-locks")
    fig, axes = plt.subplots(2, 4, figsize=(17, 8.5))
    fig.suptitle("K1-K4: the four performance killers, A vs B: kernel evidence per request (top), server CPU per request (bottom)",
                 fontsize=12)
    drawn = False
    copy_name = lambda r: variant(r, "copy") or "unknown"
    stats = variant_stats(k1, copy_name, ["direct", "staged", "splice"], ["copy_bytes_per_req", "cpu_us_per_req"])
    drawn |= killer_bars(axes[0][0], stats, 0, "#4c72b0", "kernel<->user copies (bytes / request)",
                         "K1 copies (k1-copies, --copy)")
    drawn |= killer_bars(axes[1][0], stats, 1, "#dd8452", "server CPU (µs / request)", "K1 copies: CPU")
    labels = dict(K2_MODELS)
    stats = variant_stats(k2, lambda r: labels.get(text(r, "experiment")), [l for _, l in K2_MODELS],
                          ["ctx_switches_per_req", "cpu_us_per_req"])
    drawn |= killer_bars(axes[0][1], stats, 0, "#4c72b0", "context switches / request",
                         "K2 context switches (one core, 100 busy)")
    drawn |= killer_bars(axes[1][1], stats, 1, "#dd8452", "server CPU (µs / request)", "K2 context switches: CPU")
    stats = variant_stats(k3, lambda r: variant(r, "alloc") or "unknown", ["pooled", "per-request"],
                          ["mallocs_per_req", "cpu_us_per_req"])
    drawn |= killer_bars(axes[0][2], stats, 0, "#4c72b0", "mallocs / request (uprobe)", "K3 allocation (k3-alloc, --alloc)")
    drawn |= killer_bars(axes[1][2], stats, 1, "#dd8452", "server CPU (µs / request)", "K3 allocation: CPU")
    # Waits for the lock (K4's claim); results written before that column count every futex wait.
    if any(num(r, "futex_lock_waits_per_req") is not None for r in k4):
        drawn |= k4_panel(axes[0][3], k4, "futex_lock_waits_per_req", "futex lock waits / request", "K4 locks (k4-locks, --queue)")
    else:
        drawn |= k4_panel(axes[0][3], k4, "futex_waits_per_req", "futex waits (lock + work) / request", "K4 locks (k4-locks, --queue)")
    drawn |= k4_panel(axes[1][3], k4, "cpu_us_per_req", "server CPU (µs / request)", "K4 locks: CPU")
    for ax, data, experiment in [(axes[0][0], k1, "k1-copies"), (axes[0][1], k2, "k2-*"), (axes[0][2], k3, "k3-alloc"),
                                 (axes[0][3], k4, "k4-locks")]:
        if not data:
            note(f"{name}: no ok rows for {experiment}: its panels say so")
    if not drawn:
        plt.close(fig)
        return note(f"skipped {name}: the killer rows have no per-request values")
    used = k1 + k2 + k3 + k4
    finish(fig, used, os.path.join(out, name), repeats_note(used))


# --- plot 6: models side by side ----------------------------------------------------------

MODEL_NUMBERS = {"iterative": 1, "process-per-connection": 2, "thread-per-connection": 2, "prefork": 3, "reactor": 4,
                 "reactor-thread-per-request": 5, "reactor-worker": 6, "reactor-pool": 7, "multi-reactor": 8,
                 "multi-reactor-pool": 9, "proactor": 10}


def model_label(model):
    number = MODEL_NUMBERS.get(model)
    return f"{number}: {model}" if number else model


def plot_models(rows, out):
    name = "models.png"
    data = ok_rows(rows, experiment_is("c7-models", "c7-multi"))
    if not data:
        return note(f"skipped {name}: no rows with status ok for experiments c7-models, c7-multi")
    groups = group(data, lambda r: text(r, "model"))
    order = sorted(groups, key=lambda m: (MODEL_NUMBERS.get(m, 99), m))
    throughput = [spread(groups[m], "throughput_rps") for m in order]
    p99 = [spread(groups[m], "latency_p99_us") for m in order]
    if not any(throughput) and not any(p99):
        return note(f"skipped {name}: c7 rows have no throughput_rps or latency_p99_us values")
    # A model that failed requests served only some clients: its figures are not comparable.
    errored = [any((num(r, "errors") or 0) > 0 for r in groups[m]) for m in order]
    colors = ["#bbbbbb" if e else ("#c44e52" if m == "multi-reactor-pool" else "#4c72b0") for m, e in zip(order, errored)]
    labels = [model_label(m) + (" (errors)" if e else "") for m, e in zip(order, errored)]
    fig, (rps_ax, p99_ax) = plt.subplots(1, 2, figsize=(15, 6.5))
    fig.suptitle("C7: every model at 1,000 connections, 100 active (c7-models, c7-multi); model 9 in red, "
                 "grey: served with errors", fontsize=12)
    for ax, stats, unit, title, log in [(rps_ax, throughput, "throughput (requests / s)", "throughput per model", False),
                                        (p99_ax, p99, "p99 latency (µs, log scale)", "p99 latency per model", True)]:
        med = [s[0] if s else 0 for s in stats]
        bars = ax.bar(range(len(order)), med, 0.65, color=colors,
                      yerr=error_bars(med, [s[1] if s else 0 for s in stats], [s[2] if s else 0 for s in stats]),
                      capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333333"})
        label_bars(ax, bars, [s[0] if s else None for s in stats], [s[2] if s else None for s in stats])
        for x, value in enumerate(stats):
            if value is None:  # an empty cell is a missing value, not 0
                ax.annotate("no value", (x, 0), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                            fontsize=7, color="#666666", rotation=90, xycoords=("data", "axes fraction"))
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        if not log:
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        if log and any(m > 0 for m in med):
            ax.set_yscale("log")
        headroom(ax)
    cpus = distinct(data, "server_cpus")
    finish(fig, data, os.path.join(out, name), f"server CPUs: {cpus}; " + (repeats_note(data) or "one run each"))


# --- plot 7: reactors and pool sizes ------------------------------------------------------


def compute_fraction(row):
    """P = compute / (compute + block) from the variant in force; None without compute."""
    try:
        compute = float(variant(row, "compute_us") or "nan")
        block = float(variant(row, "block_us") or "0")
    except ValueError:
        return None
    if not math.isfinite(compute) or compute <= 0:
        return None
    return compute / (compute + block)


def cpu_set(cpus):
    """The CPUs of a list such as "0-1,3"; None when unreadable (e.g. "unknown" or two lists)."""
    result = set()
    for part in cpus.split(","):
        bounds = part.split("-")
        try:
            low, high = int(bounds[0]), int(bounds[-1])
        except ValueError:
            return None
        result.update(range(low, high + 1))
    return result or None


def cpu_count(cpus):
    found = cpu_set(cpus)
    return len(found) if found else None


def panel_reactors(ax, rows):
    sweep = ok_rows(rows, experiment_is("c6-reactors"))
    pinned = ok_rows(rows, experiment_is("c4-multi-reactor"))
    points = series_points(sweep, "reactors", "throughput_rps")
    if not points and not pinned:
        return None
    if points:
        xs, med, lo, hi = zip(*points)
        client = distinct(sweep, "client_cpus")
        ax.errorbar(xs, med, yerr=error_bars(med, lo, hi), color="#4c72b0", marker="o", capsize=3, linewidth=1.5,
                    label=f"c6-reactors (server CPUs {distinct(sweep, 'server_cpus')}, load on {client})")
        server_cpus = cpu_set(distinct(sweep, "server_cpus"))
        if server_cpus:
            shared = bool(server_cpus & (cpu_set(client) or set()))
            ax.axvline(len(server_cpus), color="#888888", linestyle=":", linewidth=1)
            ax.text(len(server_cpus), 0.02, f" {len(server_cpus)} server CPUs: more loops cannot scale here"
                    + ("\n (the load generator shares them)" if shared else ""),
                    transform=ax.get_xaxis_transform(), fontsize=7.5, color="#555555", va="bottom")
    for r in group(pinned, lambda r: num(r, "reactors")).items():
        s = spread(r[1], "throughput_rps")
        if r[0] is not None and s is not None:
            ax.errorbar([r[0]], [s[0]], yerr=[[s[0] - s[1]], [s[2] - s[0]]], color="#c44e52", marker="D", capsize=3,
                        linestyle="none", label=f"c4-multi-reactor (load on {distinct(r[1], 'client_cpus')})")
    ax.set_xlabel("event loops (reactors)")
    ax.set_ylabel("throughput (requests / s)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylim(bottom=0)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_title("C6: throughput vs event loops (multi-reactor)")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend above the points
    ax.legend(fontsize=7.5, loc="upper center")
    return sweep + pinned


def panel_pool_size(ax, rows):
    data = [r for r in ok_rows(rows, experiment_is("c9-pool-size")) if compute_fraction(r) is not None]
    if not data:
        return None
    cores = cpu_count(distinct(data, "server_cpus")) or 1
    by_fraction = group(data, compute_fraction)
    drawn = False
    for i, p in enumerate(sorted(by_fraction, reverse=True)):
        points = series_points(by_fraction[p], "workers", "throughput_rps")
        if not points:
            continue
        xs, med, lo, hi = zip(*points)
        color = PALETTE[i % len(PALETTE)]
        ax.errorbar(xs, med, yerr=error_bars(med, lo, hi), color=color, marker="o", capsize=3, linewidth=1.5,
                    label=f"P = {p:.3g}: C/P = {cores / p:.3g}")
        ax.axvline(cores / p, color=color, linestyle="--", linewidth=1, alpha=0.7)
        drawn = True
    if not drawn:
        return None
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("pool threads (workers, log2 scale)")
    ax.set_ylabel("throughput (requests / s)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylim(bottom=0)
    ax.set_title(f"C9: throughput vs pool size per compute fraction P (C = {cores}); dashed: T = C/P")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower right")
    return data


def plot_reactors(rows, out):
    name = "reactors.png"
    wanted = experiment_is("c6-reactors", "c4-multi-reactor", "c9-pool-size")
    if not ok_rows(rows, wanted):
        return note(f"skipped {name}: no rows with status ok for experiments c6-reactors, c4-multi-reactor, c9-pool-size")
    present = panels_with_data(name, [(panel_reactors, "c6-reactors, c4-multi-reactor"),
                                      (panel_pool_size, "c9-pool-size")], rows)
    if not present:
        return note(f"skipped {name}: no throughput values in the rows of c6-reactors, c4-multi-reactor, c9-pool-size")
    fig, axes = plt.subplots(1, len(present), figsize=(7 * len(present), 5.8), squeeze=False)
    fig.suptitle("C6, C9: throughput vs event loops and vs pool size", fontsize=13)
    used = []
    for draw, ax in zip(present, axes[0]):
        used += draw(ax, rows)
    finish(fig, used, os.path.join(out, name), repeats_note(used))


# --- plot 8: the thundering herd -----------------------------------------------------------

ACCEPT_ORDER = ["blocking", "shared-epoll", "epoll-exclusive", "reuseport"]


def plot_herd(rows, out):
    name = "herd.png"
    data = ok_rows(rows, experiment_is("c3-blocking-accept", "c3-epoll-accept"))
    if not data:
        return note(f"skipped {name}: no rows with status ok for experiments c3-blocking-accept, c3-epoll-accept")
    groups = group(data, lambda r: variant(r, "accept") or "unknown")
    order = sorted(groups, key=lambda m: (ACCEPT_ORDER.index(m) if m in ACCEPT_ORDER else len(ACCEPT_ORDER), m))
    series = [("scheduler wake-ups / accepted connection", "#4c72b0", [spread(groups[m], "wakeups_per_accept") for m in order]),
              ("accept calls / accepted connection", "#dd8452", [spread(groups[m], "accept_calls_per_accept") for m in order])]
    series = [s for s in series if any(s[2])]
    if not series:
        return note(f"skipped {name}: c3 rows have no wakeups_per_accept or accept_calls_per_accept values")
    workers = distinct(data, "workers")
    fig, ax = plt.subplots(figsize=(10, 5.8))
    fig.suptitle(f"C3: the thundering herd: {workers} prefork processes sharing one listener, per accept mode", fontsize=12)
    grouped_bars(ax, [f"{m}\n({text(groups[m][0], 'io')})" for m in order], series)
    ax.axhline(1, color="#888888", linestyle=":", linewidth=1)
    ax.set_ylabel("per accepted connection (measured window)")
    ax.set_xlabel("--accept (io)")
    ax.set_title("a herd wakes every waiting process per connection; one accept call per connection is the floor", fontsize=9.5)
    ax.set_ylim(bottom=0)
    headroom(ax)
    ax.legend(fontsize=8, loc="upper right")
    finish(fig, data, os.path.join(out, name), repeats_note(data))


# --- main ----------------------------------------------------------------------------


def load_results(directory):
    path = os.path.join(directory, "results.csv")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not found: run `muxlab bench WORKLOAD --out {directory}` first")
    try:
        header, rows = read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read: {error}")
    if not header:
        raise InputError(f"{path}: empty file: no header")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(needs {', '.join(REQUIRED_COLUMNS)} to identify each row)")
    return rows


def main(argv):
    parser = argparse.ArgumentParser(prog="muxplot", description="PNG plots for a muxlab results directory.")
    parser.add_argument("directory", help="a results directory written by `muxlab bench`")
    parser.add_argument("--out", help="where the PNGs go (default: DIRECTORY/plots)")
    args = parser.parse_args(argv)
    try:
        rows = load_results(args.directory)
    except InputError as error:
        note(f"muxplot: {error}")
        return 1
    out = args.out or os.path.join(args.directory, "plots")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        note(f"muxplot: {out}: cannot create the output directory: {error.strerror}")
        return 1
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10})
    failed = 0
    timeline = os.path.join(args.directory, "timeline.csv")
    for name, draw in [("idle-scaling.png", lambda: plot_idle_scaling(rows, out)),
                       ("fdset-bytes.png", lambda: plot_fdset_bytes(rows, out)),
                       ("lt-vs-et.png", lambda: plot_lt_vs_et(rows, out)),
                       ("emfile.png", lambda: plot_emfile(rows, timeline, out)),
                       ("killers.png", lambda: plot_killers(rows, out)),
                       ("models.png", lambda: plot_models(rows, out)),
                       ("reactors.png", lambda: plot_reactors(rows, out)),
                       ("herd.png", lambda: plot_herd(rows, out))]:
        try:
            draw()
        except Exception as error:  # one broken plot must not cost the others
            plt.close("all")
            note(f"failed {name}: {type(error).__name__}: {error}")
            failed += 1
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
