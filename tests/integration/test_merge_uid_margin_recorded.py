"""Review s7 F9: verify checks a folder's UIDNEXT against the
backfill_imap_uid_margin the merge gave it (the cursor's m item), not
against the setting as it is when verify runs (docs/imap-caches.md).

Every user: an archive INBOX and Sent (UIDs 301, 602, 903: UIDNEXT 904),
three live INBOX messages by LMTP: INBOX goes renumber, Sent archive,
merged with userdb_backfill_imap_uid_margin=1000 (UIDNEXT 1904, 1907).

- raised: the margin is raised to 100000 after the merge: verify is still
  ok (before, it said "UIDNEXT 1904, below 100904" and exited 1); a record
  forged to claim a bigger margin than the folder got fails it: verify
  reads the record;
- old: the m items are taken out of the record (a merge by a build before
  it was recorded), margin raised to 100000: verify checks the archive's
  UIDNEXT alone and is ok; a Sent made again below the archive's UIDNEXT
  still fails it.
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from test_merge_uid_margin import scenario, AS, ARCH_NEXT  # noqa: E402
import statedb  # noqa: E402

USERS = ("raised", "old")
SMALL, BIG = 1000, 100000


class MarginRecorded(bftest.SiteCase):
    SITE = dict(plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.scen = {}
        for k, user in enumerate(USERS):
            g, s = scenario(31 + k, (("INBOX", 1300000201), ("Sent", AS)))
            cls.scen[user] = (g, s)
            site.add_user(user, s, record=False,
                          extra="userdb_backfill_imap_uid_margin=%d" % SMALL)
        site.dc.auto_mailboxes = "no"
        site.start(plugin_on=False)
        dc = site.dc
        for user in USERS:
            g = cls.scen[user][0]
            for i in range(3):
                dc.lmtp_deliver(user, g.message(1700000000 + i, kind="plain"))
        site.enable_plugin()
        cls.runs = {u: bd.doveadm(dc, "backfill", "run", "-u", u, fmt="json")
                    for u in USERS}
        cls.cursors = {u: cls.cursor(site, u) for u in USERS}
        cls.verified = {u: cls.verify(dc, u) for u in USERS}
        # old: a record from before the margin was recorded
        cls.set_cursor(site, "old", re.sub(r" m:\d+:\d+", "", cls.cursors["old"]))
        for user in USERS:
            dc.set_user(user, extra="userdb_backfill_imap_uid_margin=%d" % BIG)
            assert re.search(r"backfill_imap_uid_margin\s+%d\b" % BIG,
                             dc.doveadm("user", user).stdout.decode())

    @staticmethod
    def cursor(site, user):
        db = statedb.connect(os.path.join(site.state_dir, "state.db"), readonly=True)
        try:
            return db.execute("SELECT cursor FROM merges WHERE user = ?",
                              (user,)).fetchone()[0]
        finally:
            db.close()

    @staticmethod
    def set_cursor(site, user, text):
        db = statedb.connect(os.path.join(site.state_dir, "state.db"))
        try:
            with db:
                db.execute("UPDATE merges SET cursor = ? WHERE user = ?", (text, user))
        finally:
            db.close()

    @staticmethod
    def verify(dc, user):
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", user, ok=(0, 1))
        return r.returncode, rows[0], r.stderr

    def uidnext(self, user, folder):
        out = self.site.dc.doveadm("mailbox", "status", "-u", user, "uidnext",
                                   folder).stdout.decode()
        return int(re.search(r"uidnext=(\d+)", out).group(1))

    def test_merged_with_the_small_margin(self):
        for user in USERS:
            self.assertEqual(self.runs[user].returncode, 0, self.runs[user].stderr)
            # renumber INBOX, archive Sent: both on record with the margin
            self.assertRegex(self.cursors[user], r" w:0:renumber:.* w:1:archive:")
            self.assertIn(" m:0:%d m:1:%d" % (SMALL, SMALL), self.cursors[user])
            code, row, err = self.verified[user]
            self.assertEqual((code, row["result"]), (0, "ok"), err)
            self.assertEqual(self.uidnext(user, "Sent"), ARCH_NEXT + SMALL)
            self.assertEqual(self.uidnext(user, "INBOX"), ARCH_NEXT + SMALL + 3)

    def test_margin_raised_after_the_merge(self):
        dc = self.site.dc
        code, row, err = self.verify(dc, "raised")
        self.assertEqual((code, row["result"], row["uid_mismatches"]), (0, "ok", "0"),
                         row.get("uid_mismatch_list", "") + err)
        # the record is what verify goes by: a margin the folder never got
        forged = self.cursors["raised"].replace(" m:1:%d" % SMALL, " m:1:%d" % (SMALL + 5))
        self.assertNotEqual(forged, self.cursors["raised"])
        self.set_cursor(self.site, "raised", forged)
        try:
            code, row, err = self.verify(dc, "raised")
        finally:
            self.set_cursor(self.site, "raised", self.cursors["raised"])
        self.assertEqual((code, row["result"], row["uid_mismatches"]), (1, "uids", "1"))
        self.assertIn("Sent: live folder Sent has UIDNEXT %d, below %d (the archive's %d"
                      " plus backfill_imap_uid_margin): it was merged with margin %d"
                      % (ARCH_NEXT + SMALL, ARCH_NEXT + SMALL + 5, ARCH_NEXT, SMALL + 5),
                      row["uid_mismatch_list"])

    def test_old_record_checked_against_the_archive_uidnext(self):
        dc = self.site.dc
        self.assertNotIn(" m:", self.cursor(self.site, "old"))
        code, row, err = self.verify(dc, "old")
        self.assertEqual((code, row["result"], row["uid_mismatches"]), (0, "ok", "0"),
                         row.get("uid_mismatch_list", "") + err)
        # below the archive's own UIDNEXT is still wrong: Sent made again
        # (same GUID and UIDVALIDITY), its messages at UIDs 1-3
        out = dc.doveadm("mailbox", "status", "-u", "old", "guid", "Sent").stdout.decode()
        guid = re.search(r"guid=(\S+)", out).group(1)
        dc.doveadm("mailbox", "delete", "-u", "old", "Sent")
        dc.doveadm("mailbox", "create", "-u", "old", "-g", guid, "Sent")
        dc.doveadm("mailbox", "update", "-u", "old", "--uid-validity", str(AS), "Sent")
        for msg in self.scen["old"][1].archive[1].msgs:
            dc.doveadm("save", "-u", "old", "-m", "Sent", input=msg.raw)
        self.assertEqual(self.uidnext("old", "Sent"), 4)
        code, row, err = self.verify(dc, "old")
        self.assertEqual((code, row["result"], row["uid_mismatches"]), (1, "uids", "1"))
        self.assertIn("Sent: live folder Sent has UIDNEXT 4, below %d (the archive's %d"
                      " plus backfill_imap_uid_margin): no margin on record" % (
                          ARCH_NEXT, ARCH_NEXT), row["uid_mismatch_list"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
