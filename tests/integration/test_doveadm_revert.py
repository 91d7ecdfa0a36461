"""doveadm backfill revert --yes after the user added, moved and flagged
messages: exactly the user's own messages stay (with the user's changes),
the user is pending again and a new run merges again.  reset forgets the
state without touching mail."""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg, KEYWORD  # noqa: E402
import statedb  # noqa: E402


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


def state_db(site):
    return os.path.join(site.state_dir, "state.db")


def sql(site, *statements):
    """Runs statements on the state store as root, then gives its files
    back to the mail user."""
    db = statedb.connect(state_db(site))
    try:
        for st in statements:
            db.execute(st)
        db.commit()
        rows = db.execute("SELECT 1").fetchall()
    finally:
        db.close()
    return rows


def query(site, q, *args):
    db = statedb.connect(state_db(site), readonly=True)
    try:
        return db.execute(q, args).fetchall()
    finally:
        db.close()


def count(snap):
    return sum(len(m) for _, m in snap.values())


class RevertLeaseTest(unittest.TestCase):
    """revert renews its lease (600 s) right before each mailbox's
    expunge, and stops when the lease is no longer its own.  (It also
    renews every 60 s while it walks; these reverts take seconds, so only
    the renewal before the expunge is tested here.)"""

    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.site.add_user("alice", mg.standard_scenario(3), record=False)
        self.site.start(plugin_on=False)
        rows, _ = bd.doveadm_json(self.site.dc, "backfill", "run", "-u", "alice")
        self.added = int(rows[0]["added"])
        self.assertGreater(self.added, 5)

    def test_renews(self):
        sql(self.site,
            "CREATE TABLE renewals (name TEXT, expires INTEGER)",
            "CREATE TRIGGER renewed AFTER UPDATE OF expires ON leases"
            " BEGIN INSERT INTO renewals VALUES (NEW.name, NEW.expires); END")
        t0 = int(time.time())
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "revert", "--yes", "-u", "alice")
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        self.assertEqual(int(rows[0]["removed"]), self.added)
        renewals = query(self.site, "SELECT name, expires FROM renewals")
        self.assertGreaterEqual(len(renewals), 1, "the lease was never renewed")
        for name, expires in renewals:
            self.assertIn("alice", name)
            self.assertGreaterEqual(expires, t0 + 600)

    def test_lost_lease_stops_before_removing(self):
        # whoever takes the lease, another process holds it right after
        sql(self.site,
            "CREATE TRIGGER thief AFTER INSERT ON leases"
            " BEGIN UPDATE leases SET owner = 'thief:1:x' WHERE name = NEW.name; END")
        before = self.site.dc.snapshot("alice")
        journal = query(self.site, "SELECT count(*) FROM journal")
        r = bd.doveadm(self.site.dc, "backfill", "revert", "--yes", "-u", "alice", fmt="json")
        self.assertEqual(r.returncode, 1, r.stderr)
        row = json.loads(r.stdout)[0]
        self.assertEqual(row["result"], "failed")
        # nothing was expunged, and nothing is counted as removed
        self.assertEqual((row["removed"], row["removed_moved"]), ("0", "0"))
        self.assertIn("lost the merge lease", r.stderr)
        self.assertEqual(count(self.site.dc.snapshot("alice")), count(before))
        self.assertEqual(query(self.site, "SELECT count(*) FROM journal"), journal)
        self.assertEqual(query(self.site, "SELECT status FROM merges WHERE user = 'alice'"),
                         [("done",)])


class RevertCountTest(unittest.TestCase):
    """revert counts only what it expunged, and says what it could not do."""

    def moved_uids(self, site, n):
        """Moves n backfilled INBOX messages (from the journal) to Keep."""
        uids = [u for (u,) in query(site, "SELECT uid FROM journal WHERE mailbox = 'INBOX'"
                                           " ORDER BY seq")][:n]
        c = site.dc.imap("alice")
        try:
            c.create("Keep")
            c.select("INBOX")
            typ, data = c.uid("MOVE", ",".join(str(u) for u in uids), "Keep")
            self.assertEqual(typ, "OK", data)
        finally:
            c.logout()
        return uids

    def test_no_keyword_moved_are_not_gone(self):
        site = bftest.Site(plugin={"backfill_keyword": ""})
        self.addCleanup(site.close)
        site.add_user("alice", mg.standard_scenario(3), record=False)
        site.start(plugin_on=False)
        rows, _ = bd.doveadm_json(site.dc, "backfill", "run", "-u", "alice")
        added = int(rows[0]["added"])
        self.moved_uids(site, 2)
        r = bd.doveadm(site.dc, "backfill", "revert", "--yes", "-u", "alice", fmt="json")
        row = json.loads(r.stdout)[0]
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(row["result"], "incomplete", r.stderr)
        self.assertEqual(int(row["removed"]), added - 2)
        self.assertEqual((row["removed_moved"], row["gone"], row["not_found"]), ("0", "0", "2"))
        self.assertIn("without backfill_keyword", r.stderr)
        # the two moved ones stay
        self.assertEqual(len(site.dc.snapshot("alice")["Keep"][1]), 2)

    def test_unreadable_moved_message_stops(self):
        site = bftest.Site()
        self.addCleanup(site.close)
        site.add_user("alice", mg.standard_scenario(3), record=False)
        site.start(plugin_on=False)
        bd.doveadm_json(site.dc, "backfill", "run", "-u", "alice")
        self.moved_uids(site, 2)
        before = count(site.dc.snapshot("alice"))
        keep = os.path.join(site.dc.maildir("alice"), ".Keep")
        names = []
        for d in ("cur", "new"):
            names += [os.path.join(keep, d, n) for n in os.listdir(os.path.join(keep, d))]
        self.assertEqual(len(names), 2)
        # unreadable, and no fingerprint in the cache of its new folder
        for n in names:
            os.chmod(n, 0)
        for n in os.listdir(keep):
            if n.startswith("dovecot.index"):
                os.unlink(os.path.join(keep, n))
        r = bd.doveadm(site.dc, "backfill", "revert", "--yes", "-u", "alice", fmt="json")
        self.assertEqual(r.returncode, 1, r.stderr)
        row = json.loads(r.stdout)[0]
        self.assertEqual(row["result"], "failed", r.stderr)
        self.assertRegex(r.stderr, r"Keep/uid \d+ \(has \$Backfilled\) cannot be read")
        self.assertEqual(row["removed"], "0")
        for n in names:
            os.chmod(n, 0o600)
        self.assertEqual(count(site.dc.snapshot("alice")), before)


class RevertNoArchiveTest(unittest.TestCase):
    """revert of a user without an archive forgets the record and journal
    and leaves nothing pending: status says no-archive again."""

    def test_no_archive(self):
        site = bftest.Site()
        self.addCleanup(site.close)
        site.add_user("alice", mg.standard_scenario(3), record=False)
        site.dc.add_user("carol")
        site.start(plugin_on=False)
        rows, _ = bd.doveadm_json(site.dc, "backfill", "run", "-u", "alice")
        added = int(rows[0]["added"])
        # the archive is taken away after the merge
        os.rename(os.path.join(site.archive_root, "alice"),
                  os.path.join(site.base, "alice-archive-gone"))
        for u, removed in (("alice", added), ("carol", 0)):
            rows, r = bd.doveadm_json(site.dc, "backfill", "revert", "--yes", "-u", u)
            self.assertEqual((rows[0]["result"], int(rows[0]["removed"])), ("reverted", removed),
                             r.stderr)
            st, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", u)
            self.assertEqual(st[0]["state"], "no-archive", u)
        self.assertEqual(query(site, "SELECT user FROM merges"), [])
        self.assertEqual(query(site, "SELECT count(*) FROM journal"), [(0,)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
