"""A locked state store never holds a login beyond its budget (issue 15
item 5).

Another process holds the SQLite store's write lock (BEGIN EXCLUSIVE) when
lou, whose merge is pending, logs in over POP3 and IMAP: each login returns
within the login budget plus slack instead of the store's 10 s busy
timeout, the merge is postponed with a log line that says why, status
still shows it pending, and once the lock is gone the next login merges
exactly.

The same while the store cannot even be opened within the budget: the
SQLite file locked for readers too (an exclusive locking mode: a WAL
store's readers are not stopped by a writer, its opening is), and a Redis
that accepts connections but never replies (with timeout=10000 in the
URI, as for a slow but healthy server).  Before, opening the store waited
out the store's own timeout, only what came after was bounded.
"""
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
import maildir_gen as mg  # noqa: E402

BUDGET = 0.3
# the budget, POP3's progress slice and a loaded test machine
SLACK = 2.0

# The lockers import tests/lib/statedb.py from here.
LIB = os.path.join(bftest.SRC, "tests", "lib")

LOCKER = """
import sys
sys.path.insert(0, sys.argv[2])
import statedb
db = statedb.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""

# The file itself locked: readers too, so opening the store (which reads
# the schema) waits.
FILE_LOCKER = """
import sys
sys.path.insert(0, sys.argv[2])
import statedb
db = statedb.connect(sys.argv[1], isolation_level=None, timeout=30,
                     pragmas=["PRAGMA locking_mode = EXCLUSIVE"])
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


class SilentServer:
    """Accepts TCP connections and never answers: a hung redis-server."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


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

    def make_pending(self):
        """Each case starts from a pending merge (an earlier one may have
        finished it)."""
        bd.doveadm_json(self.site.dc, "backfill", "revert", "--yes", "-u", "lou",
                        ok=(0, 1))
        rows, _ = bd.doveadm_json(self.site.dc, "backfill", "status", "-u", "lou")
        self.assertEqual(bd.by_user(rows)["lou"]["state"], "pending")

    def wait_log(self, pattern, n):
        """n lines match pattern (the log process writes them a little
        after the login returned)."""
        deadline = time.monotonic() + 10
        while len(self.site.dc.log_lines(pattern)) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertGreaterEqual(len(self.site.dc.log_lines(pattern)), n,
                                "\n".join(self.site.dc.log_lines(bftest.bf_log("lou"))))

    def logins_within_budget(self):
        """POP3 then IMAP login of lou: each within the budget."""
        times = []
        for service in ("pop3", "imap"):
            t0 = time.monotonic()
            if service == "pop3":
                self.site.dc.pop3("lou").quit()
            else:
                self.site.dc.imap("lou").logout()
            times.append(time.monotonic() - t0)
        self.assertLess(max(times), BUDGET + SLACK,
                        "a login waited for the store: %s" % times)

    def test_locked_store_postpones_within_budget(self):
        self.locked_store_case(LOCKER)

    def test_locked_file_postpones_open_within_budget(self):
        self.locked_store_case(FILE_LOCKER)

    def test_silent_redis_postpones_open_within_budget(self):
        site = self.site
        self.make_pending()
        server = SilentServer()
        sqlite_uri = site.settings["backfill_state"]
        postponed = bftest.bf_log("lou") + "merge postponed: .*redis.*no answer"
        mark = len(site.dc.log_lines(postponed))
        try:
            site.enable_plugin(backfill_state="redis://127.0.0.1:%d/0?timeout=10000"
                               % server.port)
            self.logins_within_budget()
            self.wait_log(postponed, mark + 2)
        finally:
            site.enable_plugin(backfill_state=sqlite_uri)
            server.close()
        rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "lou")
        self.assertEqual(bd.by_user(rows)["lou"]["state"], "pending")
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])

    def locked_store_case(self, locker_src):
        site = self.site
        self.make_pending()
        finished = len(site.finished_lines("lou"))
        db = os.path.join(site.state_dir, "state.db")
        mark = len(site.dc.log_lines(bftest.bf_log("lou") + "merge postponed: .*lock"))
        locker = subprocess.Popen(["/usr/bin/python3", "-c", locker_src, db, LIB],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(locker.stdout.readline().strip(), "locked")
            self.logins_within_budget()
            self.wait_log(bftest.bf_log("lou") + "merge postponed: .*lock", mark + 2)
        finally:
            locker.stdin.close()
            locker.wait(timeout=30)
            locker.stdout.close()
        rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "lou")
        self.assertEqual(bd.by_user(rows)["lou"]["state"], "pending")
        site.wait_merged("lou", count=finished + 1)
        got = bftest.multiset(site.dc.snapshot("lou"))
        exp, _, _ = bftest.expected_after(self.pre, site.views["lou"])
        self.assertEqual(got, exp, bftest.diff(exp, got))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main()
