"""A locked state store never holds a login beyond its budget (issue 15
item 5).

Another process holds the SQLite store's write lock (BEGIN EXCLUSIVE) when
lou, whose merge is pending, logs in over POP3 and IMAP: each login returns
within the login budget plus slack instead of the store's 10 s busy
timeout, the merge is postponed with a log line that says why, status
still shows it pending, and once the lock is gone the next login merges
exactly.
"""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
import maildir_gen as mg  # noqa: E402

BUDGET = 0.3
# the budget, POP3's progress slice and a loaded test machine
SLACK = 2.0

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


class MergeLockedStore(bftest.SiteCase):
    SITE = dict(plugin={"backfill_login_budget": "300ms"})

    @classmethod
    def build(cls, site):
        site.add_user("lou", mg.standard_scenario(97))
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("lou")
        site.enable_plugin()
        # the store exists (status creates it), the merge is pending
        rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "lou")
        assert bd.by_user(rows)["lou"]["state"] == "pending", rows

    def test_locked_store_postpones_within_budget(self):
        site = self.site
        db = os.path.join(site.state_dir, "state.db")
        locker = subprocess.Popen(["/usr/bin/python3", "-c", LOCKER, db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(locker.stdout.readline().strip(), "locked")
            times = []
            for service in ("pop3", "imap"):
                t0 = time.monotonic()
                if service == "pop3":
                    site.dc.pop3("lou").quit()
                else:
                    site.dc.imap("lou").logout()
                times.append(time.monotonic() - t0)
            self.assertLess(max(times), BUDGET + SLACK,
                            "a login waited for the locked store: %s" % times)
            lines = site.dc.log_lines(bftest.bf_log("lou") + "merge postponed: .*lock")
            self.assertTrue(lines, "\n".join(site.dc.log_lines(bftest.bf_log("lou"))))
        finally:
            locker.stdin.close()
            locker.wait(timeout=30)
            locker.stdout.close()
        rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "lou")
        self.assertEqual(bd.by_user(rows)["lou"]["state"], "pending")
        site.wait_merged("lou")
        got = bftest.multiset(site.dc.snapshot("lou"))
        exp, _, _ = bftest.expected_after(self.pre, site.views["lou"])
        self.assertEqual(got, exp, bftest.diff(exp, got))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main()
