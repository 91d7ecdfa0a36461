"""doveadm backfill revert --yes after the user added, moved and flagged
messages: exactly the user's own messages stay (with the user's changes),
the user is pending again and a new run merges again.  reset forgets the
state without touching mail."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg, KEYWORD  # noqa: E402


def own_multiset(snap):
    """(folder, fingerprint, flags) of every message, sorted."""
    return dv.messages_multiset(snap, with_date=False)


class RevertTest(unittest.TestCase):
    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.site.add_user("alice", mg.standard_scenario(3), record=False)
        # logins do not merge here: only doveadm does
        self.site.start(plugin_on=False)

    def uids_with(self, c, folder, keyword):
        c.select(dv._imap_quote(folder))
        typ, data = c.uid("SEARCH", "KEYWORD", keyword)
        return [int(x) for x in data[0].split()]

    def test_revert_keeps_the_users_own(self):
        dc = self.site.dc
        pre = dc.snapshot("alice")
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", "alice")
        added = int(rows[0]["added"])
        self.assertGreater(added, 5)

        # the user's own activity after the merge
        g = mg.Generator(99)
        own_new = g.message(1700100000)
        dc.append("alice", "INBOX", own_new, flags=("\\Seen",))
        c = dc.imap("alice")
        try:
            bf = self.uids_with(c, "INBOX", KEYWORD)
            self.assertGreater(len(bf), 3)
            # move two backfilled messages to a folder of the user's
            c.create("Keep")
            typ, data = c.uid("MOVE", "%d,%d" % (bf[0], bf[1]), "Keep")
            self.assertEqual(typ, "OK", data)
            # flag a backfilled one and one of the user's own
            c.uid("STORE", str(bf[2]), "+FLAGS", "(\\Flagged)")
            c.select("INBOX")
            typ, data = c.uid("SEARCH", "NOT", "KEYWORD", KEYWORD)
            own_uid = int(data[0].split()[0])
            c.uid("STORE", str(own_uid), "+FLAGS", "(\\Flagged $Mine)")
            # delete one backfilled message
            c.uid("STORE", str(bf[3]), "+FLAGS", "(\\Deleted)")
            c.expunge()
        finally:
            c.logout()
        expected = dc.snapshot("alice")
        # expected = everything now without the backfilled messages
        for folder, (uv, msgs) in expected.items():
            expected[folder] = (uv, [m for m in msgs if KEYWORD not in m.flags])
        exp = own_multiset(expected)
        self.assertEqual(len(exp), sum(len(m) for _, m in pre.values()) + 1)

        rows, r = bd.doveadm(dc, "backfill", "revert", "-u", "alice"), None
        self.assertEqual(rows.returncode, 64)
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "--yes", "-u", "alice")
        row = rows[0]
        self.assertEqual(row["result"], "reverted", r.stderr)
        self.assertEqual(int(row["removed"]), added - 3)
        self.assertEqual(int(row["removed_moved"]), 2)
        self.assertEqual(int(row["gone"]), 1)

        post = dc.snapshot("alice")
        self.maxDiff = None
        self.assertEqual(own_multiset(post), exp)
        st, _ = bd.doveadm_json(dc, "backfill", "status", "-u", "alice")
        self.assertEqual(st[0]["state"], "pending")
        self.assertEqual(st[0]["added"], "0")

        # pending again: a new run merges again, same count as the first
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", "alice")
        self.assertEqual(rows[0]["result"], "done")
        self.assertEqual(int(rows[0]["added"]), added)
        v, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "alice")
        self.assertEqual(v[0]["result"], "ok", r.stderr)

    def test_reset_forgets_without_touching_mail(self):
        dc = self.site.dc
        bd.doveadm_json(dc, "backfill", "run", "-u", "alice")
        snap = dv.messages_multiset(dc.snapshot("alice"))
        rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", "alice")
        self.assertEqual(rows[0]["result"], "forgotten")
        self.assertEqual(dv.messages_multiset(dc.snapshot("alice")), snap)
        st, _ = bd.doveadm_json(dc, "backfill", "status", "-u", "alice")
        self.assertEqual(st[0]["state"], "pending")
        self.assertEqual(st[0]["started"], "")
        # merging again after a reset adds nothing: what is live counts
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", "alice")
        self.assertEqual((rows[0]["result"], rows[0]["added"]), ("done", "0"))
        self.assertEqual(dv.messages_multiset(dc.snapshot("alice")), snap)
        rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", "alice")
        self.assertEqual(rows[0]["result"], "forgotten")
        rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", "alice")
        self.assertEqual(rows[0]["result"], "none")


if __name__ == "__main__":
    unittest.main(verbosity=2)
