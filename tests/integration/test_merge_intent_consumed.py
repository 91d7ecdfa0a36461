"""A consumption of the user's own mail in a pending intent's UID range
survives a checkpoint that keeps the intent (review s8 M1).

The archive's INBOX holds X, then N_DUPS messages the live INBOX has too
(redelivered copies: duplicates), then Y, X's exact bytes again.  The
user's live INBOX has those N_DUPS messages.

  1. The merge's mailbox commit fails (cur/ and new/ not writable: EACCES;
     quota or a full disk do the same).  Its intent stays on record, its
     UID range from the live UIDNEXT on, up to the last archive UID the run
     walked.  The run is repeated until that range reaches far into the
     duplicates (each failed run keeps the range and widens it).
  2. The user receives D, X's content, by LMTP: a live UID in the range.
  3. A rerun, slowed down (--rate), walks X, a duplicate of D, and some of
     the duplicates, commits by age (a checkpoint with nothing saved, so
     it keeps the intent, and records that D was consumed), and is then
     stopped by SIGTERM: the session ends inside the intent's range.
  4. A run to the end.

An uninterrupted twin (D delivered before one run) keeps X as the
duplicate of D and copies Y: the live mail plus one copy.  The interrupted
user must end with the same messages.  Before the fix, run 4 put D into the
live index unconsumed (the live-index phase leaves the intent's range out,
and the consumed ranges were applied before D came in), so Y was taken
for its duplicate too and the record of X's consumption was dropped: one
copy short.
"""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402
import statedb  # noqa: E402

# Many, and not tiny: a slice of the slowed rerun (20 ms of work, then a
# sleep) must end far inside them on a fast machine too
N_DUPS = 10000
LINES = 30
# Each failed run walks the archive for about a second (a batch is
# committed by age) and its intent names what it walked: the runs go on
# until the intent names WANT_RANGE archive UIDs, at most 10 of them.  A
# loaded machine walks less in that second (3,939 here at load 14, every
# run after the fourth as far as the one before), so the intent must name
# only MIN_RANGE, and run 3's pace follows from what it names.
WANT_RANGE = N_DUPS // 2
MIN_RANGE = N_DUPS // 10
# run 3's pace: a sleep of about a second after its first 20 ms slice, at
# most RATE_MAX messages a second, and slow enough that it takes
# RANGE_SECS to walk run 1's intent (its first checkpoint comes after about
# a second, then the test stops it; 5000 UIDs at 1000 a second before)
RATE_MAX = 1000
RANGE_SECS = 5
USERS = ("cut", "twin")


def rate_for(last):
    """run 3's --rate for an intent up to archive UID last."""
    return max(50, min(RATE_MAX, (last or 0) // RANGE_SECS))


def scenario(seed):
    g = mg.Generator(seed)
    s = mg.Scenario()
    f = mg.Folder("INBOX", 1300000301)
    t0 = 1500000000
    x = g.message(t0, kind="plain", lines=LINES)
    f.msgs.append(mg.Msg(x, {"\\Seen"}, t0))
    live = mg.Folder("INBOX", 1700000001)
    for i in range(N_DUPS):
        t = t0 + (i + 1) * 60
        raw = g.message(t, kind="plain", lines=LINES)
        f.msgs.append(mg.Msg(raw, {"\\Seen"}, t))
        live.msgs.append(mg.Msg(g.redelivered(raw), (), 1700000000 + i))
    t = t0 + (N_DUPS + 1) * 60
    f.msgs.append(mg.Msg(x, {"\\Seen"}, t))
    s.archive = [f]
    s.live = [live]
    return s, x


def message_id(raw):
    return re.search(rb"^Message-ID: (<[^>]*>)", raw, re.M).group(1).decode()


def imap_view(dc, user, msgid):
    """(messages in INBOX, UIDs of the message with Message-ID msgid)."""
    c = dc.imap(user)
    try:
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK", data
        count = int(data[0])
        typ, data = c.uid("SEARCH", "HEADER", "Message-ID", msgid)
        assert typ == "OK", data
        return count, [int(u) for u in data[0].split()]
    finally:
        c.logout()


def journal_of(site, user):
    db = statedb.connect(os.path.join(site.state_dir, "state.db"),
                         readonly=True)
    try:
        return [a for (a,) in db.execute("SELECT archive_uid FROM journal WHERE user = ?"
                                         " ORDER BY archive_uid", (user,))]
    finally:
        db.close()


def cursor_of(site, user):
    try:
        db = statedb.connect(os.path.join(site.state_dir, "state.db"),
                             readonly=True, timeout=0.05)
        try:
            row = db.execute("SELECT cursor FROM merges WHERE user = ?",
                             (user,)).fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return None
    return row[0] if row and row[0] else None


def cursor_items(text):
    """(f item's HIGH, intent's LASTUID or None, consumed live UIDs)."""
    items = (text or "").split(" ")
    high, last, consumed = None, None, set()
    for item in items[1:]:
        if item.startswith("f:") and high is None:
            high = int(item.split(":")[2])
        elif item.startswith("i:"):
            last = int(item.split(":")[4])
        elif item.startswith("c:"):
            for r in item.split(":", 2)[2].split(","):
                a, _, b = r.partition("-")
                consumed.update(range(int(a), int(b or a) + 1))
    return high, last, consumed


class IntentConsumed(bftest.SiteCase):
    SITE = dict(plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.scen, cls.x = {}, None
        for user in USERS:
            cls.scen[user], cls.x = scenario(41)
            site.add_user(user, cls.scen[user], record=False,
                          extra="userdb_backfill_imap_uids=live")
        cls.msgid = message_id(cls.x)
        site.start(plugin_on=False)
        dc = site.dc
        # Dovecot's own index of the big live INBOX first: the runs below
        # then spend their time on the merge
        cls.pre = {u: imap_view(dc, u, cls.msgid)[0] for u in USERS}
        dc.lmtp_deliver("twin", cls.x)
        site.enable_plugin()
        cls.twin_run = bd.doveadm(dc, "backfill", "run", "-u", "twin", fmt="json")

        # 1. failed commits until the intent names enough of the archive
        md = dc.maildir("cut")
        cls.failed_runs = []
        for _ in range(10):
            for sub in ("new", "cur"):
                os.chmod(os.path.join(md, sub), 0o555)
            try:
                r = bd.doveadm(dc, "backfill", "run", "-u", "cut", fmt="json")
            finally:
                for sub in ("new", "cur"):
                    os.chmod(os.path.join(md, sub), 0o700)
            cls.failed_runs.append(r)
            _, last, _ = cursor_items(cursor_of(site, "cut"))
            if last is not None and last >= WANT_RANGE:
                break
        cls.run1_cursor = cursor_of(site, "cut")

        # 2. D
        dc.restart(mail_plugins="")
        dc.lmtp_deliver("cut", cls.x)
        cls.d_uids = imap_view(dc, "cut", cls.msgid)[1]
        site.enable_plugin()

        # 3. slowed down, stopped once a checkpoint recorded a consumption
        cls.rate = rate_for(cursor_items(cls.run1_cursor)[1])
        cmd = bd.doveadm_argv(dc, "backfill", "run", "-u", "cut", "--rate", str(cls.rate),
                              fmt="json")
        with bd.stdin_readonly() as stdin:
            p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True,
                                 env=dc.sanitizer_env())
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if cursor_items(cursor_of(site, "cut"))[2]:
                break
            time.sleep(0.05)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
        cls.run3_out, cls.run3_err = p.communicate(timeout=120)
        cls.run3_cursor = cursor_of(site, "cut")

        # 4. to the end
        cls.last_run = bd.doveadm(dc, "backfill", "run", "-u", "cut", fmt="json")
        cls.after = {u: imap_view(dc, u, cls.msgid) for u in USERS}
        cls.journal = {u: journal_of(site, u) for u in USERS}

    def test_interrupted_equals_uninterrupted(self):
        self.assertEqual(self.twin_run.returncode, 0, self.twin_run.stderr)
        # the scenario was reached: a failed commit left an intent that
        # reaches far into the duplicates, D landed in its range, and the
        # stopped run's checkpoints kept the intent and recorded that D
        # was consumed
        self.assertIn("saving merged messages failed",
                      self.failed_runs[0].stderr + self.site.dc.log_tail(400))
        _, last1, _ = cursor_items(self.run1_cursor)
        self.assertIsNotNone(last1, "run 1 left no intent: %s" % self.run1_cursor)
        self.assertGreaterEqual(last1, MIN_RANGE, "run 1's intent: %s" % self.run1_cursor)
        self.assertEqual(len(self.d_uids), 1, self.d_uids)
        i_item = re.search(r" i:\S+", self.run1_cursor).group(0)
        self.assertGreaterEqual(self.d_uids[0], int(i_item.split(":")[3]),
                                "D is below the intent's UIDNEXT: %s" % self.run1_cursor)
        high, last, consumed = cursor_items(self.run3_cursor)
        self.assertIsNotNone(last, "the stopped run settled the intent (it got past the "
                             "range before it was stopped): %s" % self.run3_cursor)
        self.assertLess(high, last, self.run3_cursor)
        self.assertIn(self.d_uids[0], consumed,
                      "D's consumption is not on record: %s" % self.run3_cursor)
        print("\nrun 1's intent up to %d after %d failed runs; run 3 at %d a second"
              " stopped at archive UID %d of an intent up to %d"
              % (last1, len(self.failed_runs), self.rate, high, last), file=sys.stderr)

        self.assertEqual(self.last_run.returncode, 0, self.last_run.stderr)
        # D and one copy of X and Y, as in the uninterrupted run
        y = len(self.scen["cut"].archive[0].msgs)
        self.assertEqual(self.journal["twin"], [y])
        self.assertEqual(self.after["twin"][0], self.pre["twin"] + 2)
        self.assertEqual(self.journal["cut"], self.journal["twin"])
        self.assertEqual(self.after["cut"][0], self.after["twin"][0],
                         "interrupted %d messages, uninterrupted %d"
                         % (self.after["cut"][0], self.after["twin"][0]))
        self.assertEqual(len(self.after["cut"][1]), 2, self.after["cut"])
        for user in USERS:
            rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", user)
            self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)

    def test_z_revert_keeps_the_delivery(self):
        dc = self.site.dc
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "--yes", "-u", "cut")
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        dc.restart(mail_plugins="")
        try:
            count, d = imap_view(dc, "cut", self.msgid)
        finally:
            self.site.enable_plugin()
        self.assertEqual((count, d), (self.pre["cut"] + 1, self.d_uids))


if __name__ == "__main__":
    unittest.main(verbosity=2)
