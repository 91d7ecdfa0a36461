"""doveadm backfill revert removes a message only when it has the
fingerprint the journal recorded, not merely the mailbox GUID and UID the
journal names (issue 15 item 3):

- the live INBOX is put back from a copy taken before the merge (files,
  dovecot-uidlist with its mailbox GUID, index) and new mail arrives: it
  gets the very UIDs the journal names for the merged copies;
- the state store is altered so that journal entries name the user's own
  messages.

Either way the user's own messages stay, each such entry is counted as
mismatched, the row says so and doveadm exits 1.  What the merge did add
is still removed (found by keyword and fingerprint where it really is)."""
import json
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg, KEYWORD  # noqa: E402
import statedb  # noqa: E402

INBOX_FILES = ("cur", "new", "tmp", "dovecot-uidlist", "dovecot.index",
               "dovecot.index.log", "dovecot.index.cache")


def own_multiset(snap):
    return dv.messages_multiset(snap, with_date=False)


def uids(c, folder, *criteria):
    c.select(dv._imap_quote(folder))
    typ, data = c.uid("SEARCH", *criteria)
    return [int(x) for x in data[0].split()]


class RevertFingerprintTest(unittest.TestCase):
    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.site.add_user("alice", mg.standard_scenario(3), record=False)
        self.site.start(plugin_on=False)
        self.dc = self.site.dc
        self.db = os.path.join(self.site.state_dir, "state.db")

    def run_merge(self):
        rows, _ = bd.doveadm_json(self.dc, "backfill", "run", "-u", "alice")
        self.assertEqual(rows[0]["result"], "done")
        return int(rows[0]["added"])

    def revert(self):
        r = bd.doveadm(self.dc, "backfill", "revert", "--yes", "-u", "alice", fmt="json")
        rows = json.loads(r.stdout) if r.stdout.strip() else [{}]
        return rows[0], r

    def journal(self, q, *args):
        db = statedb.connect(self.db)
        try:
            rows = db.execute(q, args).fetchall()
            db.commit()
        finally:
            db.close()
        return rows

    def test_inbox_put_back_and_uids_reused(self):
        dc = self.dc
        pre = dc.snapshot("alice")
        maildir = dc.maildir("alice")
        saved = os.path.join(self.site.base, "inbox-before-merge")
        os.makedirs(saved)
        for n in INBOX_FILES:
            p = os.path.join(maildir, n)
            if os.path.isdir(p):
                shutil.copytree(p, os.path.join(saved, n), symlinks=True)
            elif os.path.exists(p):
                shutil.copy2(p, os.path.join(saved, n))
        self.run_merge()
        merged_inbox = [u for (u,) in self.journal(
            "SELECT uid FROM journal WHERE mailbox = 'INBOX' ORDER BY uid")]
        self.assertGreaterEqual(len(merged_inbox), 3)

        # the operator puts INBOX back as it was before the merge ...
        for n in INBOX_FILES:
            p = os.path.join(maildir, n)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.unlink(p)
            s = os.path.join(saved, n)
            if os.path.isdir(s):
                shutil.copytree(s, p, symlinks=True)
            elif os.path.exists(s):
                shutil.copy2(s, p)
        dv.chown_tree(maildir)
        # ... and the user's new mail gets the UIDs the journal names
        g = mg.Generator(4711)
        c = dc.imap("alice")
        try:
            before = set(uids(c, "INBOX", "ALL"))
            for i in range(len(merged_inbox)):
                dc.append("alice", "INBOX", g.message(1700200000 + i), conn=c)
            new = sorted(set(uids(c, "INBOX", "ALL")) - before)
        finally:
            c.logout()
        reused = sorted(set(new) & set(merged_inbox))
        self.assertGreaterEqual(len(reused), 3, (new, merged_inbox))
        expected = dc.snapshot("alice")
        for folder, (uv, msgs) in expected.items():
            expected[folder] = (uv, [m for m in msgs if KEYWORD not in m.flags])
        exp = own_multiset(expected)
        self.assertEqual(len(exp), sum(len(m) for _, m in pre.values()) + len(new))

        row, r = self.revert()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(row["result"], "mismatched", r.stderr)
        self.assertEqual(int(row["mismatched"]), len(reused), r.stderr)
        self.assertIn("fingerprint differs", r.stderr)
        self.maxDiff = None
        self.assertEqual(own_multiset(dc.snapshot("alice")), exp)

    def test_altered_journal_names_the_users_own(self):
        dc = self.dc
        added = self.run_merge()
        g = mg.Generator(99)
        for i in range(3):
            dc.append("alice", "INBOX", g.message(1700100000 + i), flags=("\\Seen",))
        c = dc.imap("alice")
        try:
            own = uids(c, "INBOX", "NOT", "KEYWORD", KEYWORD)
        finally:
            c.logout()
        self.assertGreaterEqual(len(own), 3)
        expected = dc.snapshot("alice")
        for folder, (uv, msgs) in expected.items():
            expected[folder] = (uv, [m for m in msgs if KEYWORD not in m.flags])
        exp = own_multiset(expected)

        # three INBOX entries now point at three of the user's messages
        seqs = [s for (s,) in self.journal(
            "SELECT seq FROM journal WHERE mailbox = 'INBOX' ORDER BY seq")][:3]
        self.assertEqual(len(seqs), 3)
        for seq, uid in zip(seqs, own[-3:]):
            self.journal("UPDATE journal SET uid = ? WHERE seq = ?", uid, seq)

        row, r = self.revert()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(row["result"], "mismatched", r.stderr)
        self.assertEqual(int(row["mismatched"]), 3)
        # the three merged copies are found by keyword and fingerprint
        self.assertEqual(int(row["removed"]) + int(row["removed_moved"]), added)
        self.assertEqual(int(row["removed_moved"]), 3)
        self.assertRegex(r.stderr, r"revert keeps INBOX/uid \d+: the journal names it")
        self.maxDiff = None
        self.assertEqual(own_multiset(dc.snapshot("alice")), exp)


class RevertCutCheckpointTest(unittest.TestCase):
    """A merge batch committed to the mailbox whose checkpoint was cut (the
    store refused the journal entries, as after a crash between the commit
    and the checkpoint) is in no journal: revert removes nothing and says
    to run the merge first; after that run, revert removes everything the
    merge added."""

    def test_cut_checkpoint(self):
        site = bftest.Site()
        self.addCleanup(site.close)
        site.add_user("alice", mg.standard_scenario(3), record=False)
        site.start(plugin_on=False)
        dc = site.dc
        pre = own_multiset(dc.snapshot("alice"))
        bd.doveadm_json(dc, "backfill", "status", "-u", "alice")
        db_path = os.path.join(site.state_dir, "state.db")

        def sql(q):
            db = statedb.connect(db_path)
            try:
                db.execute(q)
                db.commit()
            finally:
                db.close()
        sql("CREATE TRIGGER cut BEFORE INSERT ON journal"
            " BEGIN SELECT RAISE(ABORT, 'cut'); END")
        r = bd.doveadm(dc, "backfill", "run", "-u", "alice", fmt="json")
        self.assertEqual(r.returncode, 1, r.stderr)
        landed = own_multiset(dc.snapshot("alice"))
        self.assertGreater(len(landed), len(pre))
        sql("DROP TRIGGER cut")

        r = bd.doveadm(dc, "backfill", "revert", "--yes", "-u", "alice", fmt="json")
        row = json.loads(r.stdout)[0]
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(row["result"], "failed", r.stderr)
        self.assertIn("run doveadm backfill run for the user first", row["error"])
        self.assertEqual(own_multiset(dc.snapshot("alice")), landed)

        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", "alice")
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "--yes", "-u", "alice")
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        self.assertEqual(own_multiset(dc.snapshot("alice")), pre)


if __name__ == "__main__":
    unittest.main(verbosity=2)
