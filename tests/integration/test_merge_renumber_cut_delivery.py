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
user e: the same cut and delivery, but the archive's UIDs are 4, 8, 12 and
        its message 4 is live message 1 (a duplicate, not copied): the
        delivered message gets UID 4, the archive's first.  Pinned and
        moved with the live mail it would keep UIDL 00000004<A>, the one
        the old server showed for archived message 4, and an old POP3
        client that has that message would never download the new one
        (review s8 L2).  The rerun leaves it to the check for mail the
        merge did not put there: the way is given up (uid-taken, a fresh
        UIDVALIDITY), so no message shows an archived message's old UIDL
        but that message's own.
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
from test_merge_renumber_windows import A, N_ARCH, N_LIVE  # noqa: E402

MARGIN = 100000
BASE = 904 + MARGIN  # the archive's UIDNEXT (UIDs 301, 602, 903) plus the margin


def scenario(seed):
    """The windows test's user, with one more message for the window."""
    s = windows.scenario(seed)
    s.later.append(mg.Generator(seed + 1000).message(1700000100, kind="plain"))
    return s


def scenario_first_uid(seed):
    """User e: archive UIDs N_LIVE+1, 2*(N_LIVE+1), ...; the first is live
    message 1 again; one message more for the window."""
    g = mg.Generator(seed)
    s = mg.Scenario()
    s.later = [g.message(1700000000 + i, kind="plain") for i in range(N_LIVE + 1)]
    f = mg.Folder("INBOX", A)
    f.msgs.append(mg.Msg(s.later[0], set(), 1500000000))
    for i in range(1, N_ARCH):
        t = 1500000000 + i * 3600
        f.msgs.append(mg.Msg(g.message(t, kind="plain"), set(), t))
    s.archive = [f]
    s.archive_uid_gap = N_LIVE
    s.live = [mg.Folder("INBOX", 1700000001)]
    return s


class RenumberCutThenDelivery(bftest.SiteCase):
    SITE = dict(extra_conf=bftest.CRASH_CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.scen = {"c": scenario(41), "u": scenario(41), "e": scenario_first_uid(43)}
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
        cls.e_cut = bd.doveadm(dc, "backfill", "run", "-u", "e", fmt="json", env=env)
        bftest.remove_locks(dc, "e")
        cls.ref_run = bd.doveadm(dc, "backfill", "run", "-u", "u", fmt="json")
        # the window (plugin off: a login would resume the merge)
        dc.restart(mail_plugins="")
        for user, s in cls.scen.items():
            dc.lmtp_deliver(user, s.later[N_LIVE])
        cls.between = dc.mailbox("c", "INBOX")
        cls.between_uidls = dc.pop3_uidls("c")
        cls.e_between = dc.mailbox("e", "INBOX")
        cls.e_between_uidls = dc.pop3_uidls("e")
        site.enable_plugin()
        cls.rerun = bd.doveadm(dc, "backfill", "run", "-u", "c", fmt="json")
        cls.e_rerun = bd.doveadm(dc, "backfill", "run", "-u", "e", fmt="json")
        cls.after = {u: dc.mailbox(u, "INBOX") for u in cls.scen}
        cls.after_uidls = dc.pop3_uidls("c")
        cls.e_after_uidls = dc.pop3_uidls("e")

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

    def test_delivery_at_the_archives_first_uid_gets_no_old_uidl(self):
        self.assertEqual(self.e_cut.returncode, -signal.SIGKILL,
                         "renumber-uidvalidity not reached: %s" % self.e_cut.stderr[-2000:])
        first = N_LIVE + 1
        uv, msgs = self.e_between
        self.assertEqual((uv, [m.uid for m in msgs]), (A, [1, 2, 3, first]))
        self.assertEqual(self.e_rerun.returncode, 0, self.e_rerun.stderr)
        s = self.scen["e"]
        # the old server's UIDLs: %08Xu%08Xv of the archive's UIDs (lower-case hex)
        old = {"%08x%08x" % (first * (k + 1), A): m.fingerprint
               for k, m in enumerate(s.archive[0].msgs)}
        after = self.e_after_uidls
        live = [mg.Msg(raw).fingerprint for raw in s.later]
        # in the window the delivered message shows archived message 4's
        self.assertIn(("%08x%08x" % (first, A), live[N_LIVE]), self.e_between_uidls)
        arch = [m.fingerprint for m in s.archive[0].msgs]
        # archived message 4 is live message 1: the live mail and the two
        # other archived messages
        self.assertEqual(sorted(fp for _, fp in after), sorted(live + arch[1:]))
        for uidl, fp in after:
            if uidl in old:
                self.assertEqual(fp, old[uidl],
                                 "UIDL %s of the old server's archived message on "
                                 "other mail" % uidl)
        self.assertEqual(len(after), len({u for u, _ in after}), after)
        # the live messages' UIDLs seen before the rerun are kept
        for uidl, fp in self.e_between_uidls:
            if uidl not in old:
                self.assertIn((uidl, fp), after, "UIDL %s seen before the rerun" % uidl)
        self.assertEqual(self.ways("e"), ("INBOX=live", "INBOX=uid-taken"))
        self.assertNotEqual(self.after["e"][0], A)


if __name__ == "__main__":
    unittest.main(verbosity=2)
