"""A renumbering cut right after the folder took the archive's UIDVALIDITY,
then a delivery, then the rerun (docs/imap-caches.md, renumber.c).

user c: 3 live INBOX messages (LMTP, no IMAP client), an archive INBOX
        with UIDs 301, 602, 903.  The run is killed right after the INBOX
        took the archive's UIDVALIDITY (BACKFILL_TEST_CRASH=
        renumber-uidvalidity): the live messages are still at 1-3, their
        POP3 UIDLs pinned.  One message is delivered by LMTP: it gets UID 4
        under the archive's UIDVALIDITY, and a POP3 client sees its UIDL.
        Nothing of the archive is in the folder yet, so the delivered
        message is live mail like the three: the rerun must move it with
        them (UID base+3 where base is the archive's UIDNEXT plus the
        margin) and keep the UIDL it showed, finish the renumbering (INBOX
        stays renumber, the archive's UIDVALIDITY: the old server's clients
        keep their caches), instead of giving the way up (uid-taken) with a
        fresh UIDVALIDITY that every IMAP client downloads again and that
        changes the delivered message's UIDL.
user u: the same, uninterrupted, the message delivered after the merge:
        the same UIDVALIDITY, UIDs and messages.
"""
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402
import test_merge_renumber_windows as windows  # noqa: E402
from test_merge_renumber_windows import A, N_LIVE  # noqa: E402

MARGIN = 100000
BASE = 904 + MARGIN  # the archive's UIDNEXT (UIDs 301, 602, 903) plus the margin


def scenario(seed):
    """The windows test's user, with one more message for the window."""
    s = windows.scenario(seed)
    s.later.append(mg.Generator(seed + 1000).message(1700000100, kind="plain"))
    return s


class RenumberCutThenDelivery(bftest.SiteCase):
    SITE = dict(extra_conf=bftest.CRASH_CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.scen = {"c": scenario(41), "u": scenario(41)}
        for user, s in cls.scen.items():
            site.add_user(user, s, record=False)
        site.start(plugin_on=False)
        dc = site.dc
        for user, s in cls.scen.items():
            for raw in s.later[:N_LIVE]:
                dc.lmtp_deliver(user, raw)
        site.enable_plugin()
        env = dict(os.environ, BACKFILL_TEST_CRASH="renumber-uidvalidity")
        cls.cut = bd.doveadm(dc, "backfill", "run", "-u", "c", fmt="json", env=env)
        bftest.remove_locks(dc, "c")
        cls.ref_run = bd.doveadm(dc, "backfill", "run", "-u", "u", fmt="json")
        # the window (plugin off: a login would resume the merge)
        dc.restart(mail_plugins="")
        for user, s in cls.scen.items():
            dc.lmtp_deliver(user, s.later[N_LIVE])
        cls.between = dc.mailbox("c", "INBOX")
        cls.between_uidls = dc.pop3_uidls("c")
        site.enable_plugin()
        cls.rerun = bd.doveadm(dc, "backfill", "run", "-u", "c", fmt="json")
        cls.after = {u: dc.mailbox(u, "INBOX") for u in cls.scen}
        cls.after_uidls = dc.pop3_uidls("c")

    def ways(self, user):
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "status", "-u", user)
        return rows[0]["uid_ways"], rows[0]["uid_way_reasons"]

    def test_the_cut_and_the_window(self):
        self.assertEqual(self.cut.returncode, -signal.SIGKILL,
                         "renumber-uidvalidity not reached: %s" % self.cut.stderr[-2000:])
        uv, msgs = self.between
        self.assertEqual((uv, [m.uid for m in msgs]), (A, [1, 2, 3, 4]))
        self.assertEqual(len(self.between_uidls), 4)
        self.assertEqual(self.rerun.returncode, 0, self.rerun.stderr)
        self.assertEqual(self.ref_run.returncode, 0, self.ref_run.stderr)

    def test_renumbering_completes_with_the_delivered_message(self):
        self.assertEqual(self.ways("c"), ("INBOX=renumber", "INBOX=no-imap-client"))
        uv, msgs = self.after["c"]
        live = [mg.Msg(raw).fingerprint for raw in self.scen["c"].later]
        arch = [m.fingerprint for m in self.scen["c"].archive[0].msgs]
        self.assertEqual((uv, [(m.uid, m.fingerprint) for m in msgs]),
                         (A, list(zip([301, 602, 903], arch))
                          + list(zip(range(BASE, BASE + N_LIVE + 1), live))))

    def test_same_mailbox_as_uninterrupted(self):
        c_uv, c_msgs = self.after["c"]
        u_uv, u_msgs = self.after["u"]
        self.assertEqual((c_uv, [(m.uid, m.fingerprint, sorted(m.flags)) for m in c_msgs]),
                         (u_uv, [(m.uid, m.fingerprint, sorted(m.flags)) for m in u_msgs]))

    def test_pop3_uidls_seen_are_kept(self):
        after = self.after_uidls
        for uidl, fp in self.between_uidls:
            self.assertIn((uidl, fp), after, "UIDL %s seen before the rerun" % uidl)
        self.assertEqual(len(after), len({u for u, _ in after}), after)

    def test_verify(self):
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "c")
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
