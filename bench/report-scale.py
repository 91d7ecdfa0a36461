#!/usr/bin/python3
"""How `backfillctl report` grows with the site: a reference run on N users
against a run on 10 x N users, both in the same script.

    /usr/bin/python3 bench/report-scale.py build/backfillctl/backfillctl

Each run gets a fresh SQLite state store with one merge record per user
and a verify output (doveadm -f tab backfill verify's columns) with one
line per user, in the reverse order of the store's, 20 users per domain:
--users N (default 10,000) gives N / 20 domains, the large run 10 x N users
in 10 x N / 20 domains.  Measured: the user CPU time of backfillctl
report, median of --rounds rounds (default 3), and its system CPU and
elapsed time.  The report creates and fsyncs every file it writes (two
per domain), so the system and elapsed times depend on the disk and on
whatever else writes to it; the user CPU time says how the report's own
work grows.

Printed: both runs and the ratio large/reference.  Work that grows with
the users gives about 10 (sorting adds a little); work that grows with
users x domains, as the report did before (one walk of all users per
verify line and per domain), gives about 100.  The last line says whether
the ratio is at most 30 (about the geometric middle of the two); the exit
code is 0 if it is, 1 if not.
Stdlib only; no root needed; nothing outside its temp directory.
"""
import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HEADER = ("Username\tResult\tArchived\tPresent\tMissing\tSymlinks\t"
          "MissingFolderUID\tError\tUIDMismatches\tUIDMismatchList\n")


def make_site(backfillctl, d, n):
    """A store with n merge records and the verify output of n users."""
    os.makedirs(d)
    db_path = os.path.join(d, "state.db")
    subprocess.run([backfillctl, "--state", "sqlite:" + db_path, "window", "status"],
                   capture_output=True, check=False)
    nd = max(1, n // 20)
    users = ["u%07d@d%06d.example" % (i, i % nd) for i in range(n)]
    db = sqlite3.connect(db_path)
    db.executemany("INSERT INTO merges(user, status, archived, added) VALUES (?, ?, ?, ?)",
                   [(u, "done", 100, 100) for u in users])
    db.commit()
    db.close()
    with open(os.path.join(d, "verify.tsv"), "w") as f:
        f.write(HEADER)
        for u in reversed(users):
            f.write("%s\tok\t100\t100\t0\t0\t\t\t0\t\n" % u)
    return nd


def run_once(backfillctl, d, out):
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run([backfillctl, "--state", "sqlite:" + os.path.join(d, "state.db"),
                        "report", "--verify", os.path.join(d, "verify.tsv"), "--out", out],
                       capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit("backfillctl report exited %d: %s%s" % (r.returncode, r.stdout, r.stderr))
    return (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime,
            elapsed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("backfillctl")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bf-bench-report-")
    try:
        results = []
        for n in (args.users, 10 * args.users):
            d = os.path.join(tmp, "n%d" % n)
            nd = make_site(args.backfillctl, d, n)
            runs = [run_once(args.backfillctl, d, os.path.join(d, "out"))
                    for _ in range(args.rounds)]
            user, sys_, el = (statistics.median(r[i] for r in runs) for i in range(3))
            results.append(user)
            print("%8d users, %6d domains: user CPU %7.2f s, system %6.2f s, "
                  "elapsed %7.2f s (medians of %d)"
                  % (n, nd, user, sys_, el, args.rounds), flush=True)
        ratio = results[1] / max(results[0], 0.001)
        print("user CPU ratio 10x users / reference: %.1f (about 10: linear; about "
              "100: quadratic)" % ratio)
        ok = ratio <= 30
        print("scales with the users: %s (ratio %.1f %s 30)"
              % ("yes" if ok else "NO", ratio, "<=" if ok else ">"))
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
