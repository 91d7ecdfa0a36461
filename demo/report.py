"""The demo's report: a terminal summary and one self-contained HTML file
(inline CSS and SVG, no external resources) that an operator could forward
to a domain administrator."""
import html
import time

SEED_MESSAGES = 23_500_000


def projection_hours(msgs_per_s):
    return SEED_MESSAGES / msgs_per_s / 3600 if msgs_per_s > 0 else float("inf")


def terminal(r):
    """r: the dict built by run_demo.py (see Figures there)."""
    rows = [
        ("users (domains)", "%d (%d)" % (r["users"], len(r["domains"]))),
        ("archived messages", r["archived"]),
        ("restored into live mailboxes", r["added"]),
        ("duplicates avoided at merge", r["duplicates"]),
        ("repeated deliveries removed by the milter", r["milter_removed"]),
        ("  of which held, recoverable (postsuper -H)", r["milter_held"]),
        ("duplicates delivered to users", r["duplicates_delivered"]),
        ("POP3 re-downloads avoided", r["pop3_spared"]),
        ("POP3 re-downloads that happened", r["pop3_redownloads"]),
        ("missing after verify", r["missing"]),
        ("merge throughput", "%.0f msg/s" % r["throughput"]),
        ("longest gap in service (prober, 100 ms)", "%.0f ms" % (r["max_gap"] * 1000)),
        ("projection: 23.5 M messages on this host",
         "%.2f h with the service up" % projection_hours(r["throughput"])),
    ]
    width = max(len(k) for k, _ in rows)
    out = ["", "backfill demo: the incident, replayed", "=" * 38]
    out += ["%-*s  %s" % (width, k, v) for k, v in rows]
    out.append("")
    dw = max([len(d["name"]) for d in r["domains"]] + [6])
    out.append("%-*s %6s %9s %9s %11s %12s" % (dw, "domain", "users", "archived", "restored",
                                              "duplicates", "POP3 spared"))
    for d in r["domains"]:
        out.append("%-*s %6d %9d %9d %11d %12d" % (dw, d["name"], d["users"], d["archived"],
                                                   d["added"], d["duplicates"], d["pop3_spared"]))
    out.append("")
    out.append("verdict: %s" % ("PASS" if r["ok"] else "FAIL: " + "; ".join(r["problems"])))
    return "\n".join(out)


def _bar_chart(d):
    """One horizontal bar chart per domain: archived, restored, duplicates
    avoided, POP3 re-downloads avoided."""
    bars = [("archived", d["archived"], "#888"),
            ("restored", d["added"], "#2b7bb9"),
            ("duplicates avoided", d["duplicates"], "#e08a1e"),
            ("POP3 re-downloads avoided", d["pop3_spared"], "#3a9a4a")]
    top = max([v for _, v, _ in bars] + [1])
    w, label_w, bar_h, gap = 560, 190, 22, 8
    h = len(bars) * (bar_h + gap) + gap
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" '
             'aria-label="%s">' % (w, h, html.escape(d["name"]))]
    for i, (label, v, color) in enumerate(bars):
        y = gap + i * (bar_h + gap)
        bw = int((w - label_w - 70) * v / top)
        parts.append('<text x="0" y="%d" font-size="13">%s</text>' % (y + 16, html.escape(label)))
        parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>'
                     % (label_w, y, max(bw, 1), bar_h, color))
        parts.append('<text x="%d" y="%d" font-size="13" class="num">%d</text>'
                     % (label_w + bw + 6, y + 16, v))
    parts.append("</svg>")
    return "".join(parts)


def html_report(r):
    e = html.escape
    css = """body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{color:#2a7a2a}.bad{color:#b00}
section{margin:2em 0}h2{border-bottom:2px solid #2b7bb9;padding-bottom:4px}"""
    verdict = ('<p class="ok" id="verdict">PASS: nothing missing, no duplicate delivered, '
               'no POP3 re-download.</p>' if r["ok"] else
               '<p class="bad" id="verdict">FAIL: %s</p>' % e("; ".join(r["problems"])))
    summary = [
        ("Archived messages", r["archived"], "archived"),
        ("Restored into live mailboxes", r["added"], "added"),
        ("Duplicates avoided at merge", r["duplicates"], "duplicates"),
        ("Repeated deliveries removed by the milter", r["milter_removed"], "milter-removed"),
        ("Duplicates delivered to users", r["duplicates_delivered"], "duplicates-delivered"),
        ("POP3 re-downloads avoided", r["pop3_spared"], "pop3-spared"),
        ("Missing after verify", r["missing"], "missing"),
        ("Merge throughput (messages/s)", "%.0f" % r["throughput"], "throughput"),
        ("Longest gap in service (ms)", "%.0f" % (r["max_gap"] * 1000), "max-gap"),
        ("23.5 M messages on this host (hours)", "%.2f" % projection_hours(r["throughput"]),
         "projection"),
    ]
    rows = "".join('<tr><td>%s</td><td id="%s">%s</td></tr>' % (e(k), i, e(str(v)))
                   for k, v, i in summary)
    domains = []
    for d in r["domains"]:
        domains.append(
            '<section class="domain" id="domain-%s"><h2>%s</h2>'
            '<p>%d users. Every archived message is in the live mailboxes '
            '(verify: %d missing).</p>%s</section>'
            % (e(d["name"]), e(d["name"]), d["users"], d["missing"], _bar_chart(d)))
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>backfill restore report</title>
<style>%s</style></head><body>
<h1>Mail restore report</h1>
<p>Generated %s by backfill's demo: %d users in %d domains, merged with the service up.</p>
%s
<table>%s</table>
%s
</body></html>
""" % (css, e(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())), r["users"],
       len(r["domains"]), verdict, rows, "".join(domains))
