"""What happens to the live mail in the windows a cut renumbering leaves
open until the next login (review s7 F2 and F4; renumber.c, the move).

user d: the run is cut right after the move is on record
        (BACKFILL_TEST_CRASH=renumber-intent; the folder shows the
        archive's UIDVALIDITY and UIDNEXT).  Before the rerun the secondary
        MX flushes its queue and live message 1 is delivered again (the
        same message, with LMTP's own Return-Path, Delivered-To and
        Received lines: the same dedup fingerprint).  It lands at the
        move's first new UID.  The rerun must not take it for the move's
        copy of live message 1 (a copy is found by GUID, else by its
        exact bytes): 3 live + the redelivery + 3 archived = 7 messages,
        every POP3 UIDL seen between the runs still on its message, no two
        messages with one UIDL.
user f: the run is cut between the move's copy commit and its expunge
        (renumber-copied: each live message shows twice).  The user flags
        live message 1 and keywords live message 2 over IMAP before the
        rerun.  The rerun finds the copies by GUID and expunges the old
        ones: the copies show the flag and the keyword.
"""
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402

CONF = bftest.CRASH_CONF
A = 1300000201
N_ARCH, N_LIVE = 3, 3
CUTS = {"d": "renumber-intent", "f": "renumber-copied"}


def scenario(seed):
    g = mg.Generator(seed)
    s = mg.Scenario()
    f = mg.Folder("INBOX", A)
    for i in range(N_ARCH):
        t = 1500000000 + i * 3600
        f.msgs.append(mg.Msg(g.message(t, kind="plain"), set(), t))
    s.archive = [f]
    s.archive_uid_gap = 300
    s.live = [mg.Folder("INBOX", 1700000001)]
    s.later = [g.message(1700000000 + i, kind="plain") for i in range(N_LIVE)]
    return s


class RenumberWindows(bftest.SiteCase):
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.scen = {}
        for k, user in enumerate(CUTS):
            cls.scen[user] = scenario(11 + k)
            site.add_user(user, cls.scen[user], record=False)
        site.start(plugin_on=False)
        dc = site.dc
        for user in CUTS:
            for raw in cls.scen[user].later:
                dc.lmtp_deliver(user, raw)
        cls.pre = {u: dc.mailbox(u, "INBOX")[1] for u in CUTS}
        site.enable_plugin()
        cls.cut = {}
        for user, point in CUTS.items():
            r = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json",
                           env=dict(os.environ, BACKFILL_TEST_CRASH=point))
            cls.cut[user] = r
            bftest.remove_locks(dc, user)
        # the windows (plugin off: a login would resume the merge)
        dc.restart(mail_plugins="")
        dc.lmtp_deliver("d", cls.scen["d"].later[0])
        cls.between = {u: dc.mailbox(u, "INBOX")[1] for u in CUTS}
        cls.between_uidls = {u: dc.pop3_uidls(u) for u in CUTS}
        old = [m.uid for m in cls.between["f"]][:N_LIVE]
        # the copy of live message 3 (above the archive's UIDs): what the
        # user sets on it stays too (review s7 diffreview F6)
        fp3 = mg.Msg(cls.scen["f"].later[2]).fingerprint
        copy3 = max(m.uid for m in cls.between["f"] if m.fingerprint == fp3)
        c = dc.imap("f")
        try:
            c.select("INBOX")
            c.uid("STORE", str(old[0]), "+FLAGS", "(\\Flagged)")
            c.uid("STORE", str(old[1]), "+FLAGS", "($Later)")
            c.uid("STORE", str(copy3), "+FLAGS", "(\\Answered $Mine)")
        finally:
            c.logout()
        site.enable_plugin()
        cls.rerun = {u: bd.doveadm(dc, "backfill", "run", "-u", u, fmt="json")
                     for u in CUTS}
        cls.after = {u: dc.mailbox(u, "INBOX") for u in CUTS}
        cls.after_uidls = {u: dc.pop3_uidls(u) for u in CUTS}

    def check_cut(self, user):
        self.assertEqual(self.cut[user].returncode, -signal.SIGKILL,
                         "%s: %s not reached: %s" % (user, CUTS[user],
                                                     self.cut[user].stderr[-2000:]))
        self.assertEqual(self.rerun[user].returncode, 0, self.rerun[user].stderr)

    def test_redelivery_is_not_the_moves_copy(self):
        self.check_cut("d")
        uv, msgs = self.after["d"]
        self.assertEqual(uv, A)
        live = [mg.Msg(raw).fingerprint for raw in self.scen["d"].later]
        arch = [m.fingerprint for m in self.scen["d"].archive[0].msgs]
        # live message 1 twice: its own copy and the redelivery
        self.assertEqual(sorted(m.fingerprint for m in msgs),
                         sorted(arch + live + live[:1]),
                         "d: expected 3 archived + 3 live + the redelivery, got UIDs %s"
                         % [m.uid for m in msgs])
        # no message is there twice byte for byte: the redelivery is its own
        self.assertEqual(len({m.raw for m in msgs}), len(msgs))
        red = [m.raw for m in self.between["d"]
               if m.fingerprint == live[0] and m.uid >= 904]
        self.assertEqual(len(red), 1, [m.uid for m in self.between["d"]])
        self.assertIn(red[0], [m.raw for m in msgs])
        # every UIDL a POP3 client saw between the runs, on its message
        after = self.after_uidls["d"]
        for uidl, fp in self.between_uidls["d"]:
            self.assertIn((uidl, fp), after, "d: UIDL %s seen between the runs" % uidl)
        self.assertEqual(len(after), len({u for u, _ in after}), after)

    def test_flags_set_between_copy_and_expunge_kept(self):
        self.check_cut("f")
        # the cut left every live message twice
        self.assertEqual(len(self.between["f"]), N_ARCH + 2 * N_LIVE,
                         [m.uid for m in self.between["f"]])
        uv, msgs = self.after["f"]
        self.assertEqual(uv, A)
        self.assertEqual(len(msgs), N_ARCH + N_LIVE, [m.uid for m in msgs])
        live = [mg.Msg(raw).fingerprint for raw in self.scen["f"].later]
        by_fp = {m.fingerprint: m for m in msgs}
        self.assertIn("\\Flagged", by_fp[live[0]].flags, by_fp[live[0]].flags)
        self.assertIn("$Later", by_fp[live[1]].flags, by_fp[live[1]].flags)
        self.assertNotIn("\\Flagged", by_fp[live[2]].flags)
        self.assertTrue({"\\Answered", "$Mine"} <= set(by_fp[live[2]].flags),
                        by_fp[live[2]].flags)
        # moved: above the archive's UIDs (301, 602, 903)
        self.assertGreater(by_fp[live[0]].uid, 903)


if __name__ == "__main__":
    unittest.main(verbosity=2)
