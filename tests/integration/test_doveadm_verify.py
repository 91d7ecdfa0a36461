"""doveadm backfill verify: every archived message has an identical live
message (with multiplicity); a message deleted after the merge makes it
fail (exit 1) and name the archive folder and UID."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg  # noqa: E402
import statedb  # noqa: E402


class VerifyTest(unittest.TestCase):
    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.site.add_user("alice", mg.standard_scenario(2), record=False)
        # logins do not merge here: only doveadm does
        self.site.start(plugin_on=False)
        self.state = os.path.join(self.site.state_dir, "state.db")

    def journal(self):
        db = statedb.connect(self.state, readonly=True)
        try:
            return db.execute("SELECT mailbox, uid, archive_mailbox, archive_uid, fingerprint "
                              "FROM journal WHERE user='alice' ORDER BY seq").fetchall()
        finally:
            db.close()

    def test_verify(self):
        # before the merge: most of the archive is missing
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "alice", ok=(1,))
        self.assertEqual(rows[0]["result"], "missing")
        before_missing = int(rows[0]["missing"])
        self.assertGreater(before_missing, 0)

        rows, r = bd.doveadm_json(self.site.dc, "backfill", "run", "-u", "alice")
        self.assertEqual(rows[0]["result"], "done")
        self.assertEqual(before_missing, int(rows[0]["added"]))
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "alice")
        self.assertEqual(rows[0]["result"], "ok", r.stderr)
        self.assertEqual(rows[0]["missing"], "0")
        self.assertEqual(rows[0]["archived"], rows[0]["present"])

        # delete one merged message whose fingerprint occurs once in the
        # journal and that the user did not have before
        j = self.journal()
        fps = [e[4] for e in j]
        box, uid, abox, auid, fp = next(e for e in j if fps.count(e[4]) == 1 and e[0] == "INBOX")
        self.site.dc.doveadm("expunge", "-u", "alice", "mailbox", box, "uid", str(uid))
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "alice", ok=(1,))
        self.assertEqual(r.returncode, 1)
        self.assertEqual(rows[0]["result"], "missing")
        self.assertEqual(rows[0]["missing"], "1")
        self.assertEqual(rows[0]["missing_list"], "%s/%d" % (abox, auid))
        self.assertIn("archive %s/uid %d has no identical message" % (abox, auid), r.stderr)

        # a copy of it anywhere in the account (another folder) counts
        arch = os.path.join(self.site.archive_root, "alice", "Maildir")
        raw = None
        for d in ("cur", "new"):
            for name in os.listdir(os.path.join(arch, d)):
                with open(os.path.join(arch, d, name), "rb") as f:
                    data = f.read()
                if bftest.dv.fingerprint_ref.fingerprint(data)[0] == fp.hex():
                    raw = data
        self.assertIsNotNone(raw)
        self.site.dc.append("alice", "Elsewhere", raw)
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "alice")
        self.assertEqual(rows[0]["result"], "ok", r.stderr)

    def test_uids_unchecked_is_not_ok(self):
        """The IMAP UID check reads the merge record from the state store:
        with the store unreachable, or the record damaged, the row must not
        say ok (a proof report would count the user as verified): the
        store down is postponed (75, try again), a damaged record failed
        (1), each naming what was not checked."""
        dc = self.site.dc
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", "alice")
        self.assertEqual(rows[0]["result"], "done")
        gone = "plugin/backfill_state=sqlite:%s/no-such-dir/state.db" % self.site.base
        rows, r = bd.doveadm_json(dc, "-o", gone, "backfill", "verify", "-u", "alice",
                                  ok=(75,))
        self.assertEqual(rows[0]["result"], "postponed", r.stderr)
        self.assertEqual(rows[0]["missing"], "0")
        self.assertIn("IMAP UIDs not checked: state store", rows[0]["error"])
        self.assertIn("verify again once it answers", rows[0]["error"])

        db = statedb.connect(self.state)
        try:
            db.execute("UPDATE merges SET cursor = 'v9 nonsense' WHERE user = 'alice'")
            db.commit()
        finally:
            db.close()
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "alice", ok=(1,))
        self.assertEqual(rows[0]["result"], "failed", r.stderr)
        self.assertIn("IMAP UIDs not checked: merge record's cursor", rows[0]["error"])
        self.assertIn("IMAP UIDs not checked", r.stderr)

    def test_no_archive(self):
        self.site.dc.add_user("nobody")
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "nobody")
        self.assertEqual(rows[0]["result"], "no-archive")


if __name__ == "__main__":
    unittest.main(verbosity=2)
