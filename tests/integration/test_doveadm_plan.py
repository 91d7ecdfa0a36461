"""doveadm backfill plan: a dry run that writes nothing (archive, live
messages and folders, state store all checksummed before and after), and
whose figures are what run then does."""
import hashlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg  # noqa: E402
import statedb  # noqa: E402


def live_checksum(maildir):
    """Every folder and message file (name, content) of a live Maildir;
    Dovecot's own index, cache, uidlist and log files are left out: reads
    by stock doveadm rewrite them too."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(maildir):
        dirs.sort()
        rel = os.path.relpath(root, maildir)
        h.update(b"D" + rel.encode() + b"\0")
        if os.path.basename(root) in ("cur", "new", "tmp"):
            for name in sorted(files):
                with open(os.path.join(root, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
        elif "subscriptions" in files:
            with open(os.path.join(root, "subscriptions"), "rb") as f:
                h.update(b"S" + f.read())
    return h.hexdigest()


def state_dump(path):
    if not os.path.exists(path):
        return None
    db = statedb.connect(path, readonly=True)
    try:
        out = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
            out.append((table, sorted(db.execute("SELECT * FROM %s" % table).fetchall())))
        return out
    finally:
        db.close()


class PlanTest(unittest.TestCase):
    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.site.add_user("alice", mg.standard_scenario(1), record=False)
        self.site.add_user("bob", mg.bulk_scenario(7, 300, 40, 25), record=False)
        self.site.dc.add_user("carol")  # no archive
        # logins do not merge here: only doveadm does
        self.site.start(plugin_on=False)
        self.state = os.path.join(self.site.state_dir, "state.db")

    def sums(self):
        return (dv.tree_checksum(self.site.archive_root),
                {u: live_checksum(self.site.dc.maildir(u)) for u in ("alice", "bob")},
                state_dump(self.state))

    def test_plan_writes_nothing_and_predicts_run(self):
        # a store that already has a record for someone: must stay as is
        bd.doveadm_json(self.site.dc, "backfill", "run", "-u", "bob")
        bd.doveadm_json(self.site.dc, "backfill", "revert", "--yes", "-u", "bob")
        before = self.sums()
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "plan", "-A")
        plan = bd.by_user(rows)
        self.assertEqual(before, self.sums(), "plan wrote something")
        # twice: still nothing, same figures
        rows2, _ = bd.doveadm_json(self.site.dc, "backfill", "plan", "-A")
        self.assertEqual(rows, rows2)
        self.assertEqual(before, self.sums())

        self.assertEqual(plan["carol"]["state"], "no-archive")
        a = plan["alice"]
        self.assertEqual(a["state"], "pending")
        self.assertEqual(int(a["archived"]), 46)
        self.assertGreater(int(a["would_add"]), 0)
        self.assertGreater(int(a["duplicates"]), 0)
        self.assertGreater(int(a["bytes"]), 0)
        self.assertEqual(a["folders_to_create"], "Work")
        self.assertFalse(os.path.exists(os.path.join(self.site.dc.maildir("alice"), ".Work")))

        runs, _ = bd.doveadm_json(self.site.dc, "backfill", "run", "-A")
        run = bd.by_user(runs)
        for u in ("alice", "bob"):
            self.assertEqual(run[u]["result"], "done", run[u])
            self.assertEqual(run[u]["archived"], plan[u]["archived"])
            self.assertEqual(run[u]["added"], plan[u]["would_add"])
            self.assertEqual(run[u]["duplicates"], plan[u]["duplicates"])
        self.assertTrue(os.path.isdir(os.path.join(self.site.dc.maildir("alice"), ".Work")))
        # after the merge: nothing left to do
        rows, _ = bd.doveadm_json(self.site.dc, "backfill", "plan", "-u", "alice")
        self.assertEqual(rows[0]["state"], "done")
        self.assertEqual(int(rows[0]["would_add"]), 0)

    def test_formats(self):
        r = bd.doveadm(self.site.dc, "backfill", "plan", "-u", "alice", fmt="tab")
        self.assertEqual(r.returncode, 0, r.stderr)
        head, row = r.stdout.splitlines()[:2]
        self.assertEqual(head.split("\t")[:4], ["Username", "State", "Archived", "WouldAdd"])
        self.assertEqual(row.split("\t")[0], "alice")
        r = bd.doveadm(self.site.dc, "backfill", "plan", "-u", "alice", fmt="table")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("WouldAdd", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
