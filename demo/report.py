"""The demo's terminal summary: figures only the demo can measure (POP3
re-downloads, the prober's gap, the milter's removals) beside backfill's
own.  The per-domain reports for domain administrators are not made
here: the runbook's `backfillctl report` writes them, as on a real site."""

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
