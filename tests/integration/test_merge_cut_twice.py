"""A batch cut by a crash between its mailbox commit and its checkpoint,
then the rerun cut in the same window in its first batch, which both takes
the first batch's landed copies (landed_fix(): flags, keywords, UIDL) and
saves new ones: that batch writes an intent of its own before its mailbox
commit.  The landed copies it took must still be named by an intent (or
journalled) when the rerun dies before its checkpoint; otherwise the final
run took them for the user's own mail (revert kept them) or, without dedup,
copied their messages a second time.

For backfill_dedup = user (default), mailbox and off, a user merged without
interruption gives the reference; another user's run is
  1. cut in its second batch: run at 80 messages a second, so that each
     batch commits by age (1 s) with fewer messages than a full batch: a
     20 ms slice copies up to about 50 before the run sleeps, so a batch
     holds 80 to about 130 (at 150 a second, 164 of 200 here, and CI's
     machine once filled one), and
     SIGKILLed between the second batch's mailbox commit and its
     checkpoint (BACKFILL_TEST_CRASH=batch-committed:2: the process kills
     itself there; an outside kill timed by polling the store missed that
     window on an idle machine);
  2. rerun at full speed and SIGKILLed the same way once its first batch
     (the landed copies and more, up to a full batch) is committed;
  3. rerun to the end.
The mailbox must then equal the reference's (folder, fingerprint, flags:
every archived message exactly once), verify must say ok, and a revert must
leave exactly the mailbox before the merge.
"""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402
import statedb  # noqa: E402

N_ARCHIVE = 700
N_LIVE = 40
BATCH = 200  # BACKFILL_BATCH_MAX: the archive is not hardlinkable
MODES = {"user": "", "mailbox": "userdb_backfill_dedup=mailbox",
         "off": "userdb_backfill_dedup=off"}


# doveconf passes only these to doveadm (the crash points)
CONF = bftest.CRASH_CONF


class CutTwice(bftest.SiteCase):
    SITE = dict(extra_conf=CONF)
    @classmethod
    def build(cls, site):
        scen = mg.bulk_scenario(31, N_ARCHIVE, N_LIVE, 10, folders=("INBOX",),
                                lines=4, multipart_share=0.02)
        for mode, extra in MODES.items():
            site.add_user("ref" + mode, scen, extra=extra, record=False)
            site.add_user("cut" + mode, scen, extra=extra, record=False)
        site.start(plugin_on=False)
        cls.pre = {m: site.dc.snapshot("cut" + m) for m in MODES}
        cls.ref = {}
        for mode in MODES:
            rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "ref" + mode)
            assert rows[0]["result"] == "done", r.stderr
            cls.ref[mode] = site.dc.snapshot("ref" + mode)

    # ------------------------------------------------------------ helpers
    def db_path(self):
        return os.path.join(self.site.state_dir, "state.db")

    def store(self, user):
        """(journal entries, intent item of the cursor or None)."""
        try:
            db = statedb.connect(self.db_path(), readonly=True, timeout=0.05)
            try:
                n = db.execute("SELECT count(*) FROM journal WHERE user = ?",
                               (user,)).fetchone()[0]
                row = db.execute("SELECT cursor FROM merges WHERE user = ?",
                                 (user,)).fetchone()
            finally:
                db.close()
        except sqlite3.OperationalError:
            return -1, None
        m = re.search(r" i:(\S+)", (row[0] or "") if row else "")
        return n, m.group(1) if m else None

    def merged_listed(self, user):
        """Messages in INBOX's dovecot-uidlist beyond the user's own:
        Maildir writes it last in a commit, so more of them than journal
        entries means a batch is committed and not checkpointed."""
        path = os.path.join(self.site.dc.maildir(user), "dovecot-uidlist")
        try:
            with open(path) as f:
                return max(0, len(f.readlines()) - 1 - N_LIVE)
        except FileNotFoundError:
            return 0

    def run_cut(self, user, point, *args):
        """A run that SIGKILLs itself at point (BACKFILL_TEST_CRASH):
        batch-committed:N is between the N-th batch's mailbox commit and
        its checkpoint."""
        env = dict(os.environ, BACKFILL_TEST_CRASH=point)
        r = subprocess.run(bd.doveadm_argv(self.site.dc, "backfill", "run", *args,
                                           "-u", user, fmt="json"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=self.site.dc.sanitizer_env(env), check=False)
        bftest.remove_locks(self.site.dc, user)
        self.assertEqual(r.returncode, -signal.SIGKILL,
                         "%s: %s not reached: %s" % (user, point, r.stderr[-2000:]))

    def cut_twice(self, mode):
        user = "cut" + mode
        dc = self.site.dc
        # 1. the second batch commits by age, small, and is cut.  At 80
        # messages a second a batch commits by age (BACKFILL_BATCH_MAX_MSECS)
        # before it is full.
        self.run_cut(user, "batch-committed:2", "-r", "80")
        journal, intent1 = self.store(user)
        self.assertIsNotNone(intent1, "run 1 left no intent")
        landed = self.merged_listed(user) - journal
        self.assertTrue(0 < landed < BATCH, "run 1's cut batch: %d landed" % landed)
        # 2. the rerun's first batch takes the landed copies and saves more
        self.run_cut(user, "batch-committed:1")
        journal2, intent2 = self.store(user)
        listed = self.merged_listed(user)
        self.assertEqual(journal2, journal, "run 2 checkpointed")
        self.assertGreater(listed - journal, landed, "run 2 saved nothing new")
        print("\n%s: run 1 cut a batch of %d landed copies, run 2 one of %d"
              % (user, landed, listed - journal), file=sys.stderr)
        # 3. to the end
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", user)
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        got = bftest.multiset(dc.snapshot(user))
        exp = bftest.multiset(self.ref[mode])
        self.assertEqual(got, exp, "cut %d landed, then %d; %s"
                         % (landed, listed - journal, bftest.diff(exp, got)))
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", user)
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "--yes", "-u", user)
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        got = bftest.multiset(dc.snapshot(user))
        exp = bftest.multiset(self.pre[mode])
        self.assertEqual(got, exp, "after revert: " + bftest.diff(exp, got))

    # -------------------------------------------------------------- tests
    def test_dedup_user(self):
        self.cut_twice("user")

    def test_dedup_mailbox(self):
        self.cut_twice("mailbox")

    def test_dedup_off(self):
        self.cut_twice("off")


if __name__ == "__main__":
    unittest.main(verbosity=2)
