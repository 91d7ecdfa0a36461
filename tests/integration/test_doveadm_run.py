"""doveadm backfill run: -A --parallel 4 over 200 users, resumable and
idempotent, status --by-domain, and a live session merging the same user
at the same time (merged once)."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
import dovecot as dv  # noqa: E402
from bftest import dv, mg  # noqa: E402
import statedb  # noqa: E402

N_USERS = 200


class RunManyTest(unittest.TestCase):
    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.addCleanup(bd.check_log_no_stray_write, self.site.dc)
        bd.use_full_usernames(self.site)
        self.users = []
        for i in range(N_USERS):
            dom = "d%d.example" % (i % 3)
            user = "u%03d@%s" % (i, dom)
            # small archives: 12 messages, 4 live, 2 of them redelivered
            self.site.add_user(user, mg.bulk_scenario(i + 1, 12, 4, 2,
                                                      folders=("INBOX", "Sent Messages", "Work")),
                               record=False)
            self.users.append(user)
        self.site.dc.add_user("noarchive@d0.example")
        self.site.start(plugin_on=True)

    def test_parallel_all_users(self):
        t0 = time.time()
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "run", "-A", "--parallel", "4")
        secs = time.time() - t0
        print("run -A --parallel 4, %d users: %.1f s" % (N_USERS, secs), file=sys.stderr)
        got = bd.by_user(rows)
        self.assertEqual(len(rows), N_USERS + 1, "one row per user")
        # doveadm's own column names each row's user although rows come
        # late, and no second column repeats it
        self.assertEqual(len(got), N_USERS + 1, "one row per user")
        self.assertFalse(any("user" in row for row in rows))
        self.assertEqual(got["noarchive@d0.example"]["result"], "no-archive")
        for u in self.users:
            row = got[u]
            self.assertEqual(row["result"], "done", row)
            self.assertEqual(int(row["archived"]), 12, row)
            self.assertEqual(int(row["duplicates"]), 2, row)
            self.assertEqual(int(row["added"]), 10, row)
        # the summary line on stderr (not a TTY: plain lines)
        self.assertIn("backfill run: 201 users (201 done, 0 busy, 0 failed), 2400 messages", r.stderr)

        # every user's live mailbox: pre-existing 4 + 10 added, once
        for u in self.users[:10]:
            snap = self.site.dc.snapshot(u)
            n = sum(len(msgs) for _, msgs in snap.values())
            self.assertEqual(n, 14, u)

        # a second run has nothing to do
        rows, _ = bd.doveadm_json(self.site.dc, "backfill", "run", "-A", "-p", "4")
        self.assertTrue(all(row["result"] in ("done", "no-archive") for row in rows))
        st, _ = bd.doveadm_json(self.site.dc, "backfill", "status", "-A")
        st = bd.by_user(st)
        self.assertTrue(all(st[u]["state"] == "done" and st[u]["added"] == "10" for u in self.users))
        self.assertEqual(st["noarchive@d0.example"]["state"], "no-archive")
        dom, _ = bd.doveadm_json(self.site.dc, "backfill", "status", "-A", "--by-domain")
        dom = {row["domain"]: row for row in dom}
        self.assertEqual(sorted(dom), ["d0.example", "d1.example", "d2.example"])
        self.assertEqual(sum(int(d["done"]) for d in dom.values()), N_USERS)
        self.assertEqual(int(dom["d0.example"]["users"]), 68)
        self.assertEqual(int(dom["d0.example"]["no_archive"]), 1)
        self.assertEqual(int(dom["d1.example"]["added"]), 67 * 10)
        v, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-A")
        self.assertTrue(all(row["result"] in ("ok", "no-archive") for row in v), r.stderr)


class UsageTest(unittest.TestCase):
    def test_usage_errors(self):
        site = bftest.Site()
        self.addCleanup(site.close)
        self.addCleanup(bd.check_log_no_stray_write, site.dc)
        site.add_user("alice", mg.bulk_scenario(1, 5, 1, 0), record=False)
        site.start(plugin_on=True)
        for args in (("run", "--parallel", "0"), ("run", "--parallel", "5000"), ("revert",)):
            r = bd.doveadm(site.dc, "backfill", *args, "-u", "alice")
            self.assertEqual(r.returncode, 64, (args, r.stderr))
        self.assertIn("--yes", r.stderr)
        # nothing was merged by any of them
        st, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "alice")
        self.assertEqual(st[0]["state"], "pending")
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "alice", "--rate", "1000")
        self.assertEqual(rows[0]["result"], "done", r.stderr)

    def test_store_down_is_tempfail(self):
        """A state store that cannot be opened: the user is `postponed`
        and run exits 75, which scripts retry; nothing is merged."""
        site = bftest.Site()
        self.addCleanup(site.close)
        self.addCleanup(bd.check_log_no_stray_write, site.dc)
        site.add_user("alice", mg.bulk_scenario(1, 5, 1, 0), record=False)
        site.start(plugin_on=True)
        gone = "sqlite:/nonexistent-backfill-dir/state.db"
        rows, r = bd.doveadm_json(site.dc, "-o", "plugin/backfill_state=" + gone,
                                  "backfill", "run", "-u", "alice", ok=(75,))
        self.assertEqual(rows[0]["result"], "postponed", r.stderr)
        self.assertIn("/nonexistent-backfill-dir", rows[0]["error"])
        self.assertIn("merge postponed", r.stderr)
        st, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "alice")
        self.assertEqual(st[0]["state"], "pending")
        # a relative path: each process would open a store of its own in
        # the directory it runs in (a mail process: the user's home)
        rows, r = bd.doveadm_json(site.dc, "-o", "plugin/backfill_state=sqlite:state.db",
                                  "backfill", "run", "-u", "alice", ok=(75,))
        self.assertEqual(rows[0]["result"], "postponed", r.stderr)
        self.assertIn("not an absolute path", rows[0]["error"])
        self.assertFalse(os.path.exists(os.path.join(site.dc.home("alice"), "state.db")))

    def test_store_write_failure_is_tempfail(self):
        """A state store that answers reads but refuses the merge's lease
        (a trigger stands in for a store that fails half way): the user is
        `postponed` and run exits 75, as when the store cannot be opened,
        not `failed` and 1."""
        site = bftest.Site()
        self.addCleanup(site.close)
        self.addCleanup(bd.check_log_no_stray_write, site.dc)
        site.add_user("alice", mg.bulk_scenario(1, 5, 1, 0), record=False)
        site.add_user("bob", mg.bulk_scenario(2, 5, 1, 0), record=False)
        site.start(plugin_on=True)
        bd.doveadm_json(site.dc, "backfill", "run", "-u", "bob")
        db = statedb.connect(os.path.join(site.state_dir, "state.db"))
        try:
            db.execute("CREATE TRIGGER refuse BEFORE INSERT ON leases"
                       " BEGIN SELECT RAISE(ABORT, 'disk I/O error (test)'); END")
            db.commit()
        finally:
            db.close()
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "alice", ok=(75,))
        self.assertEqual(rows[0]["result"], "postponed", r.stderr)
        self.assertIn("disk I/O error (test)", rows[0]["error"])
        self.assertNotIn("merge postponed: merge postponed", r.stderr)


class ExitCodeTest(unittest.TestCase):
    """The one exit-code rule of every backfill command
    (docs/doveadm-backfill.md): a state store that cannot be opened or read
    75, any other failure of a user 1 (here an archive folder that cannot
    be read, and an archive outside backfill_archive's root), and with
    several users 1 wins over 75."""

    NOSTORE = "sqlite:/nonexistent-backfill-dir/state.db"

    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.addCleanup(bd.check_log_no_stray_write, self.site.dc)
        base = self.site.base
        self.site.add_user("ok", mg.bulk_scenario(1, 12, 4, 2), record=False)
        # a folder of the archive the mail user cannot read
        self.site.add_user("broken", mg.bulk_scenario(2, 12, 4, 2), record=False)
        os.chmod(os.path.join(self.site.archive_root, "broken", "Maildir", ".Work"), 0)
        # an archive path that resolves outside the archive root
        mg.build_user(os.path.join(base, "elsewhere"), "outside", mg.bulk_scenario(3, 12, 4, 2),
                      record=False)
        os.makedirs(os.path.join(self.site.archive_root, "outside"))
        os.symlink(os.path.join(base, "elsewhere", "archive", "outside", "Maildir"),
                   os.path.join(self.site.archive_root, "outside", "Maildir"))
        self.site.dc.add_user("outside")
        self.site.add_user("nostore", mg.bulk_scenario(4, 12, 4, 2), record=False,
                           extra="userdb_backfill_state=" + self.NOSTORE)
        self.site.start(plugin_on=False)

    def code(self, *args):
        r = bd.doveadm(self.site.dc, "backfill", *args, fmt="json")
        return r.returncode, r

    def check_rows(self, args, rows, stderr):
        """-A: a row for every user, failed ones included, with the
        error in the error column."""
        if args == ("status", "-d"):
            self.assertEqual(len(rows), 1, rows)
            self.assertEqual((rows[0]["users"], rows[0]["postponed"]), ("4", "1"), rows)
            return
        self.assertEqual(sorted(row["username"] for row in rows),
                         sorted(("ok", "broken", "outside", "nostore")), (args, stderr))
        got = bd.by_user(rows)
        col = "state" if args[0] in ("plan", "status") else "result"
        nostore = got["nostore"]
        if args[0] == "verify":
            self.assertEqual(nostore[col], "missing")
        else:
            self.assertEqual(nostore[col], "postponed", args)
            self.assertIn("/nonexistent-backfill-dir", nostore["error"], args)
        if args[0] in ("run", "plan", "verify"):
            for u in ("broken", "outside"):
                self.assertEqual(got[u][col], "failed", (args, u))
                self.assertNotEqual(got[u]["error"], "", (args, u))
            self.assertIn("outside the archive root", got["outside"]["error"])
        if args[0] == "status":
            self.assertIn("outside the archive root", got["outside"]["error"])
            self.assertEqual(got["outside"][col], "failed", rows)
        self.assertEqual(got["ok"].get("error", ""), "", args)

    def test_exit_codes(self):
        # command: (ok, broken, outside, nostore, -A); run first, so that
        # verify has something to find and status a record to show
        expected = [
            (("run",), (0, 1, 1, 75, 1)),
            (("plan",), (0, 1, 1, 75, 1)),
            # verify compares archive and live mail without the store:
            # nostore is never merged, so it misses messages (1, not 75)
            (("verify",), (0, 1, 1, 1, 1)),
            # status reads the record; the archive only to tell a missing
            # one, which here is an error
            (("status",), (0, 0, 1, 75, 1)),
            (("status", "-d"), (0, 0, 1, 75, 1)),
            # neither needs the archive
            (("reset",), (0, 0, 0, 75, 75)),
            (("revert", "--yes"), (0, 0, 0, 75, 75)),
        ]
        users = ("ok", "broken", "outside", "nostore")
        for args, codes in expected:
            got = []
            for u in users:
                got.append(self.code(*args, "-u", u)[0])
            code, r = self.code(*args, "-A")
            got.append(code)
            self.assertEqual(tuple(got), codes, args)
            self.check_rows(args, json.loads(r.stdout), r.stderr)
            if args == ("run",):
                # run again: ok is done (0), the others as before
                got = tuple(self.code("run", "-u", u)[0] for u in users)
                self.assertEqual(got, codes[:4])


class StatusFailedTest(unittest.TestCase):
    """A merge that stopped on an error leaves its record FAILED with
    last_error (merge.c): status shows `failed` and the error, status -d
    counts it as failed, and run picks the user up again."""

    def test_failed_record(self):
        site = bftest.Site()
        self.addCleanup(site.close)
        self.addCleanup(bd.check_log_no_stray_write, site.dc)
        bd.use_full_usernames(site)
        site.add_user("alice@a.example", mg.bulk_scenario(1, 12, 4, 2), record=False)
        site.add_user("bob@a.example", mg.bulk_scenario(2, 12, 4, 2), record=False)
        site.start(plugin_on=False)
        rows, _ = bd.doveadm_json(site.dc, "backfill", "run", "-u", "bob@a.example")
        self.assertEqual(rows[0]["result"], "done")
        why = "INBOX/uid 7: reading the archive failed: Input/output error"
        db = statedb.connect(os.path.join(site.state_dir, "state.db"))
        db.execute("INSERT INTO merges (user, status, cursor, archived, added, started, updated,"
                   " last_error) VALUES ('alice@a.example', 'failed', NULL, 3, 2, 1700000000,"
                   " 1700000100, ?)", (why,))
        db.commit()
        db.close()

        st, r = bd.doveadm_json(site.dc, "backfill", "status", "-A")
        st = bd.by_user(st)
        a = st["alice@a.example"]
        self.assertEqual((a["state"], a["last_error"], a["error"]), ("failed", why, ""))
        self.assertEqual((a["archived"], a["added"], a["started"], a["finished"]),
                         ("3", "2", "2023-11-14T22:13:20Z", ""))
        self.assertEqual((st["bob@a.example"]["state"], st["bob@a.example"]["last_error"]),
                         ("done", ""))
        # status reports; the failed merge is for run (or a login) to retry
        self.assertEqual(r.returncode, 0)
        r = bd.doveadm(site.dc, "backfill", "status", "-u", "alice@a.example", fmt="tab")
        head, row = r.stdout.splitlines()[:2]
        row = dict(zip(head.split("\t"), row.split("\t")))
        self.assertEqual((row["State"], row["LastError"]), ("failed", why))
        dom, _ = bd.doveadm_json(site.dc, "backfill", "status", "-A", "-d")
        self.assertEqual(len(dom), 1)
        d = dom[0]
        self.assertEqual((d["users"], d["failed"], d["done"], d["postponed"]), ("2", "1", "1", "0"))
        # run resumes the failed merge
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "alice@a.example")
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        st, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "alice@a.example")
        self.assertEqual(st[0]["state"], "done")

    def test_merge_that_cannot_start_is_recorded(self):
        """A record whose cursor this plugin cannot read: the merge does
        not start (run: failed, exit 1, the line says to reset), and the
        record says so too: failed, last_error set, the cursor kept for
        whoever looks at it.  reset, then run, merges."""
        site = bftest.Site()
        self.addCleanup(site.close)
        self.addCleanup(bd.check_log_no_stray_write, site.dc)
        site.add_user("carl", mg.bulk_scenario(3, 12, 4, 2), record=False)
        site.start(plugin_on=False)
        bd.doveadm_json(site.dc, "backfill", "status", "-u", "carl")  # creates the store
        db = statedb.connect(os.path.join(site.state_dir, "state.db"))
        db.execute("INSERT INTO merges (user, status, cursor, started, updated)"
                   " VALUES ('carl', 'running', 'v99:from-the-future', 1700000000, 1700000100)")
        db.commit()
        db.close()
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "carl", ok=(1,))
        self.assertEqual(rows[0]["result"], "failed", r.stderr)
        self.assertIn("unknown cursor", rows[0]["error"])
        st, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "carl")
        self.assertEqual(st[0]["state"], "failed")
        self.assertIn("unknown cursor 'v99:from-the-future'", st[0]["last_error"])
        self.assertIn("doveadm backfill reset", st[0]["last_error"])
        bd.doveadm_json(site.dc, "backfill", "reset", "-u", "carl")
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "carl")
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        st, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "carl")
        self.assertEqual((st[0]["state"], st[0]["last_error"]), ("done", ""))


class RunWithSessionTest(unittest.TestCase):
    """A user logs in (IMAP: the merge goes on in background slices) while
    run -A works: the lease lets exactly one of them merge."""

    def setUp(self):
        self.site = bftest.Site(plugin={"backfill_login_budget": "50ms"})
        self.addCleanup(self.site.close)
        self.addCleanup(bd.check_log_no_stray_write, self.site.dc)
        self.site.add_user("big", mg.bulk_scenario(3, 3000, 100, 60), record=False)
        for i in range(20):
            self.site.add_user("small%02d" % i, mg.bulk_scenario(100 + i, 10, 3, 1), record=False)
        self.site.start(plugin_on=True)

    def test_merged_once(self):
        pre = self.site.dc.snapshot("big")
        pre_n = sum(len(m) for _, m in pre.values())
        stop = threading.Event()
        errors = []

        def session():
            try:
                c = self.site.dc.imap("big")
                while not stop.is_set():
                    c.noop()
                    time.sleep(0.02)
                c.logout()
            except Exception as e:  # pragma: no cover
                errors.append(e)

        t = threading.Thread(target=session)
        t.start()
        time.sleep(0.3)  # the session has taken the lease
        try:
            rows, r = bd.doveadm_json(self.site.dc, "backfill", "run", "-A", "-p", "2",
                                      ok=(0, 75))
        finally:
            # let the session finish its merge, if it has it
            deadline = time.time() + 120
            while time.time() < deadline and not self.site.finished_lines("big"):
                if re.search(bftest.bf_log("big") + "merge finished", r.stderr):
                    break
                time.sleep(0.2)
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        row = bd.by_user(rows)["big"]
        self.assertIn(row["result"], ("busy", "done"))
        if row["result"] == "busy":
            self.assertEqual(r.returncode, 75, "a skipped user: try again later")
            self.assertIn("another session", row["error"])
        # whoever did it: exactly one finished merge for big
        finished = len(self.site.finished_lines("big")) + \
            len(re.findall(bftest.bf_log("big") + "merge finished", r.stderr))
        if row["result"] == "busy":
            self.site.wait_merged("big")
            finished = len(self.site.finished_lines("big"))
        self.assertEqual(finished, 1)
        st, _ = bd.doveadm_json(self.site.dc, "backfill", "status", "-u", "big")
        self.assertEqual(st[0]["state"], "done")
        self.assertEqual(int(st[0]["archived"]), 3000)
        added = int(st[0]["added"])
        post = self.site.dc.snapshot("big")
        self.assertEqual(sum(len(m) for _, m in post.values()), pre_n + added)
        self.assertEqual(added + int(st[0]["duplicates"]), 3000)
        v, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "big")
        self.assertEqual(v[0]["result"], "ok", r.stderr)
        # the others were merged by run
        rows = bd.by_user(rows)
        self.assertTrue(all(rows["small%02d" % i]["result"] == "done" for i in range(20)))


def journal_count(db, user):
    """The user's journal entries (-1 while the store is missing or
    busy): one for each merged message of a checkpointed batch."""
    try:
        con = statedb.connect(db, readonly=True, timeout=0.05)
        try:
            return con.execute("SELECT count(*) FROM journal WHERE user = ?",
                               (user,)).fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return -1


class ResumeTest(unittest.TestCase):
    """run stopped by SIGTERM mid-merge: reported, non-zero exit; the next
    run resumes from the cursor and the result is the same mailbox."""

    def test_sigterm_then_resume(self):
        site = bftest.Site()
        self.addCleanup(site.close)
        self.addCleanup(bd.check_log_no_stray_write, site.dc)
        site.add_user("big", mg.bulk_scenario(11, 1500, 50, 30), record=False)
        site.start(plugin_on=False)
        pre = sum(len(m) for _, m in site.dc.snapshot("big").values())
        cmd = bd.doveadm_argv(site.dc, "backfill", "run", "-u", "big",
                              "--rate", "400", fmt="json")
        with bd.stdin_readonly() as stdin:
            p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 env=site.dc.sanitizer_env())
        # stopped once a batch is checkpointed (journalled), not after a
        # fixed delay: on a loaded machine doveadm may not have begun the
        # merge 1.5 s after its start (nothing to interrupt or resume then)
        db = os.path.join(site.state_dir, "state.db")
        t0 = time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < 120 and \
                journal_count(db, "big") <= 0:
            time.sleep(0.01)
        waited = time.monotonic() - t0
        if p.poll() is not None:
            self.fail("run ended before its first checkpoint: %s" % p.communicate()[1])
        # unshare and sh exec: p.pid is doveadm by now
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        self.assertNotEqual(p.returncode, 0, err)
        # a merge of more than 0.5 s without -p: no worker report lines
        # sent to stdin (read-only here, as from cron)
        bd.check_no_stray_write(err)
        row = json.loads(out)[0]
        self.assertEqual(row["result"], "interrupted", err)
        done_before = int(row["archived"])
        print("\nstopped %.2f s after its start, %d merged" % (waited, done_before),
              file=sys.stderr)
        self.assertGreater(done_before, 0)
        # --rate 400 stopped after its first checkpoint: far fewer than
        # the 1500 (the merge cannot outrun its pace, however long the
        # wait above took on a loaded machine, unless that was 2.5 s)
        self.assertLessEqual(done_before, 1000, "stopped after %.2f s" % waited)
        st, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "big")
        self.assertEqual(st[0]["state"], "running")

        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "big")
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        self.assertIn("merge resumed", r.stderr)
        added, dups = int(rows[0]["added"]), int(rows[0]["duplicates"])
        self.assertEqual((int(rows[0]["archived"]), added + dups), (1500, 1500))
        self.assertEqual(dups, 30)
        post = sum(len(m) for _, m in site.dc.snapshot("big").values())
        self.assertEqual(post, pre + added)
        v, r = bd.doveadm_json(site.dc, "backfill", "verify", "-u", "big")
        self.assertEqual(v[0]["result"], "ok", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
