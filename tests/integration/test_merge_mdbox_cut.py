"""A live mailbox in mdbox, a batch cut by SIGKILL between its mailbox
commit and its checkpoint (BACKFILL_TEST_CRASH=batch-committed), then
resumed: the mailbox equals an uninterrupted merge's (every archived
message exactly once, flags kept, live mail untouched), verify says ok and
revert leaves the mailbox before the merge.

The resume finds the cut batch's copies through its intent
(merge-batch.c, backfill_merge_landed_load()).  On Maildir that read needs
a forced resync (Dovecot may have written dovecot-uidlist and not its
index); on mdbox the index is the record of what a commit saved, and a
forced resync there rebuilds the user's whole storage, under a live
session's feet, at every resume.
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402

CONF = bftest.CRASH_CONF
USERS = ("ref", "cut1", "cut2")


def content(snap):
    """{folder: sorted [(fingerprint, flags)]}: what the user has."""
    return {f: sorted((m.fingerprint, tuple(sorted(m.flags))) for m in msgs)
            for f, (_, msgs) in snap.items()}


def run(dc, user, env=None):
    return bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json", env=env)


class MdboxCutBatch(bftest.SiteCase):
    SITE = dict(extra_conf=CONF)
    MAIL_LOCATION = "mdbox:~/mdbox"

    @classmethod
    def build(cls, site):
        if cls.MAIL_LOCATION:
            site.dc.mail_location = cls.MAIL_LOCATION
        scen = mg.bulk_scenario(41, 600, 30, 8, folders=("INBOX", "Work"), lines=4,
                                multipart_share=0.02)
        for user in USERS:
            site.add_user(user, scen, record=False, extra="userdb_backfill_imap_uids=live")
        site.start(plugin_on=False)
        dc = site.dc
        cls.pre = {u: dc.snapshot(u) for u in USERS}
        site.enable_plugin()
        r = run(dc, "ref")
        assert r.returncode == 0, r.stderr
        cls.killed, cls.final = {}, {}
        for user, point in (("cut1", "batch-committed:1"), ("cut2", "batch-committed:2")):
            r = run(dc, user, env=dict(os.environ, BACKFILL_TEST_CRASH=point))
            cls.killed[user] = r.returncode
            bftest.remove_locks(dc, user)
            r = run(dc, user)
            cls.final[user] = (r.returncode, r.stdout + r.stderr)
        cls.post = {u: dc.snapshot(u) for u in USERS}

    def test_killed_in_the_window(self):
        for user in USERS[1:]:
            self.assertEqual(self.killed[user], -9, user)
            self.assertEqual(self.final[user][0], 0, self.final[user][1])

    def test_same_mailbox_as_uninterrupted(self):
        ref = content(self.post["ref"])
        self.assertGreater(sum(len(v) for v in ref.values()),
                           sum(len(v) for v in content(self.pre["ref"]).values()))
        for user in USERS[1:]:
            self.assertEqual(content(self.post[user]), ref, user)

    def test_live_mail_keeps_its_uids(self):
        """The live messages keep their UIDs and flags (the way is live)."""
        for user in USERS:
            for f, (uv, msgs) in self.pre[user].items():
                post_uv, post = self.post[user][f]
                self.assertEqual(post_uv, uv, (user, f))
                by_uid = {m.uid: (m.fingerprint, m.flags) for m in post}
                for m in msgs:
                    self.assertEqual(by_uid.get(m.uid), (m.fingerprint, m.flags), (user, f, m.uid))

    def counts(self, user):
        """Messages per folder, read by doveadm: an IMAP login would start
        the merge again (revert leaves the user pending)."""
        r = self.site.dc.doveadm("mailbox", "status", "-u", user, "-t", "messages", "*")
        out = r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout
        return int(re.search(r"messages=(\d+)", out).group(1))

    def test_verify_then_revert(self):
        dc = self.site.dc
        for user in USERS:
            rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", user)
            self.assertEqual(rows[0]["result"], "ok", user + r.stdout + r.stderr)
        pre = sum(len(msgs) for _, msgs in self.pre["ref"].values())
        for user in USERS[1:]:
            rows, r = bd.doveadm_json(dc, "backfill", "revert", "-y", "-u", user)
            self.assertEqual(rows[0]["result"], "reverted", r.stdout + r.stderr)
            self.assertEqual(self.counts(user), pre, user)


class MaildirCutBatch(MdboxCutBatch):
    MAIL_LOCATION = None


if __name__ == "__main__":
    unittest.main(verbosity=2)
