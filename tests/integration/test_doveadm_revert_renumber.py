"""revert and verify around a renumbering (issue 19, docs/imap-caches.md;
review s7 F5, F6).

A renumbered live folder takes the archive's UIDVALIDITY, the copies land
at the archive's UIDs, then the live messages move above the archive's
UIDNEXT; the move is on record in the merge record's cursor first, so that
the next run finishes it.  What is checked:
- revert (with or without --keep-renumbered) of a user whose renumbering
  was cut (after the folder took the archive's UIDVALIDITY, after the move
  was on record, between the move's copies and its expunges) refuses before
  anything changes: result refused, exit 1, the error says to run
  `doveadm backfill run -u USER` first.  Once that run finished the move,
  revert --keep-renumbered goes through, and the merge after it leaves
  every message once (6: 3 live, 3 archived), with unique POP3 UIDLs and
  the live ones' UIDLs kept.  A cut right after the decision (nothing
  changed in the mailbox yet) is not refused.
- reset refuses such a user the same way (it forgets the record too),
  and forgets it once a run finished the move.  Its refusal names
  `reset -f`; with -f it forgets a record cut between the move's copies
  and its expunges at once (result forgotten, exit 0, the error column
  and a warning say what that costs), touching no mail, and the next
  merge does not finish the move: the old live messages and their copies
  both stay, the archived ones once (review s7 F5).  A run cut after a
  batch's commit, before its checkpoint (the folder renumbered, its move
  not begun): refused naming -f, and -f's error names both costs.
- verify stays ok for a renumbered folder with two live messages of one
  GUID (the user copied a renumbered message into its own folder), and
  fails (uids) with two messages showing one POP3 UIDL.
- verify is ok for a correct renumbered folder where a delivery took a UID
  between the UIDNEXT raise and the move (the moved messages landed above
  it).
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402

ARCHIVE_UV = 1300000201
LIVE_UV = 1700000001
N = 3
CONF = bftest.CRASH_CONF
# user: where its renumbering is cut (None: not cut)
CUTS = {"cuv": "renumber-uidvalidity", "cintent": "renumber-intent",
        "ccopied": "renumber-copied", "cdecided": "renumber-decided",
        "window": "renumber-intent", "twice": None,
        "rintent": "renumber-intent", "rcopied": "renumber-copied",
        "fcopied": "renumber-copied", "fbatch": "batch-committed"}
REFUSED = ("cuv", "cintent", "ccopied")
RESET_REFUSED = ("rintent", "rcopied")


def scenario(g):
    s = mg.Scenario()
    f = mg.Folder("INBOX", ARCHIVE_UV)
    for i in range(N):
        t = 1500000000 + i * 3600
        f.msgs.append(mg.Msg(g.message(t, kind="plain"), set(), t))
    s.archive = [f]
    s.archive_uid_gap = 300
    s.live = [mg.Folder("INBOX", LIVE_UV)]
    return s


def files(dc, user):
    """The INBOX's message files (no login: a login would merge)."""
    md = dc.maildir(user)
    return sorted(os.listdir(os.path.join(md, "cur")) + os.listdir(os.path.join(md, "new")))


def status(dc, user):
    rows, _ = bd.doveadm_json(dc, "backfill", "status", "-u", user)
    return rows[0]


class RevertRenumberCut(bftest.SiteCase):
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        g = mg.Generator(71)
        for user in CUTS:
            site.add_user(user, scenario(g), record=False)
        site.start(plugin_on=False)
        dc = site.dc
        cls.pre_uidls = {}
        for user in CUTS:
            for i in range(N):
                dc.lmtp_deliver(user, g.message(1700000000 + i * 60, kind="plain"))
            cls.pre_uidls[user] = dc.pop3_uidls(user)
        site.enable_plugin()
        cls.cut = {}
        for user, point in CUTS.items():
            env = dict(os.environ, BACKFILL_TEST_CRASH=point) if point else None
            r = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json", env=env)
            cls.cut[user] = r.returncode
            # the killed process's Maildir locks
            bftest.remove_locks(dc, user)
        # a delivery after the UIDNEXT raise, before the move (plugin off:
        # a delivery's session must not finish the merge)
        dc.restart(mail_plugins="")
        cls.window_new = g.message(1750000000, kind="plain")
        dc.lmtp_deliver("window", cls.window_new)
        site.enable_plugin()

    def test_cut_renumbering_refuses_revert(self):
        dc = self.site.dc
        for user in REFUSED:
            self.assertEqual(self.cut[user], -9, user)
            before = (files(dc, user), status(dc, user))
            for args in (("-y", "-k"), ("-y",)):
                rows, r = bd.doveadm_json(dc, "backfill", "revert", "-u", user, *args,
                                          ok=(1,))
                self.assertEqual(rows[0]["result"], "refused", (user, args, r.stderr))
                self.assertIn("doveadm backfill run -u %s" % user, rows[0]["error"])
                self.assertIn("INBOX", rows[0]["error"])
                self.assertIn("cut before its end", r.stderr)
                self.assertEqual((files(dc, user), status(dc, user)), before, (user, args))
            # the run finishes the move; then --keep-renumbered reverts
            r = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json")
            self.assertEqual(r.returncode, 0, r.stderr)
            rows, r = bd.doveadm_json(dc, "backfill", "revert", "-u", user, "-y", "-k")
            self.assertEqual((rows[0]["result"], rows[0]["removed"]), ("reverted", str(N)),
                             r.stdout + r.stderr)
            self.check_once(user)

    def test_cut_renumbering_refuses_reset(self):
        """reset forgets the record as revert does (review s7 F5, reset):
        it refuses too, until a run finished the move."""
        dc = self.site.dc
        for user in RESET_REFUSED:
            self.assertEqual(self.cut[user], -9, user)
            before = (files(dc, user), status(dc, user))
            rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", user, ok=(1,))
            self.assertEqual(rows[0]["result"], "refused", (user, r.stdout, r.stderr))
            self.assertIn("doveadm backfill run -u %s" % user, rows[0]["error"])
            self.assertIn("INBOX", rows[0]["error"])
            self.assertEqual((files(dc, user), status(dc, user)), before, user)
            r = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json")
            self.assertEqual(r.returncode, 0, r.stderr)
            rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", user)
            self.assertEqual(rows[0]["result"], "forgotten", r.stdout + r.stderr)
            self.check_once(user)

    def reset_force(self, user):
        """reset refused naming -f, then reset -f: (the mailbox's files
        before, the refusal's error, reset -f's rows and result)."""
        dc = self.site.dc
        self.assertEqual(self.cut[user], -9, user)
        before = files(dc, user)
        rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", user, ok=(1,))
        self.assertEqual(rows[0]["result"], "refused", (r.stdout, r.stderr))
        self.assertIn("reset -f", rows[0]["error"])
        self.assertNotIn("nothing removed", rows[0]["error"])
        refused = rows[0]["error"]
        rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", user, "-f")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(rows[0]["result"], "forgotten", r.stdout + r.stderr)
        self.assertIn("reset -f:", r.stderr)
        return before, refused, rows, r

    def test_cut_renumbering_reset_force(self):
        """reset -f forgets a record whose renumbering was cut between the
        move's copies and its expunges (review s7 F5: the way out when a
        run cannot settle the record)."""
        dc = self.site.dc
        user = "fcopied"
        before, refused, rows, r = self.reset_force(user)
        self.assertIn("doveadm backfill run -u %s" % user, refused)
        self.assertIn("INBOX", rows[0]["error"])
        self.assertIn("the next merge does not finish the move", rows[0]["error"])
        # no mail touched, the record gone
        self.assertEqual(files(dc, user), before)
        rows, r = bd.doveadm_json(dc, "backfill", "reset", "-u", user, "--force")
        self.assertEqual(rows[0]["result"], "none", r.stdout + r.stderr)
        # as the docs say: the move is not finished, the old live
        # messages and their copies both stay; dedup adds no archived
        # message twice
        r = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json")
        self.assertEqual(r.returncode, 0, r.stderr)
        uv, msgs = dc.mailbox(user, "INBOX")
        fps = [m.fingerprint for m in msgs]
        self.assertEqual((len(msgs), len(set(fps))), (3 * N, 2 * N),
                         (uv, [m.uid for m in msgs]))
        twice = {fp for fp in fps if fps.count(fp) == 2}
        self.assertEqual(len(twice), N, fps)

    def test_cut_batch_reset_force(self):
        dc = self.site.dc
        user = "fbatch"
        before, refused, rows, r = self.reset_force(user)
        self.assertIn("in no journal yet", refused)
        self.assertIn("revert can never remove them", rows[0]["error"])
        self.assertIn("the next merge does not finish the move", rows[0]["error"])
        self.assertEqual(files(dc, user), before)

    def check_once(self, user):
        """After a revert the user is pending: the next merge (a login's,
        here a run's) leaves every message once."""
        dc = self.site.dc
        r = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json")
        self.assertEqual(r.returncode, 0, r.stderr)
        uv, msgs = dc.mailbox(user, "INBOX")
        fps = [m.fingerprint for m in msgs]
        self.assertEqual((len(msgs), len(set(fps))), (2 * N, 2 * N),
                         (user, uv, [m.uid for m in msgs]))
        uidls = dc.pop3_uidls(user)
        self.assertEqual(len(uidls), len({u for u, _ in uidls}), (user, uidls))
        self.assertTrue(set(self.pre_uidls[user]) <= set(uidls),
                        (user, set(self.pre_uidls[user]) - set(uidls)))

    def test_cut_right_after_the_decision_is_not_refused(self):
        """Nothing changed in the mailbox yet: nothing to finish first."""
        dc = self.site.dc
        self.assertEqual(self.cut["cdecided"], -9)
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "-u", "cdecided", "-y", "-k")
        self.assertEqual(rows[0]["result"], "reverted", r.stdout + r.stderr)
        self.check_once("cdecided")

    def test_verify_ok_with_a_delivery_before_the_move(self):
        """The delivery took the first UID above the archive's; the moved
        messages are above it, each with the POP3 UIDL it showed."""
        dc = self.site.dc
        self.assertEqual(self.cut["window"], -9)
        r = bd.doveadm(dc, "backfill", "run", "-u", "window", fmt="json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(status(dc, "window")["uid_ways"], "INBOX=renumber")
        uv, msgs = dc.mailbox("window", "INBOX")
        fps = [m.fingerprint for m in msgs]
        self.assertEqual((uv, len(fps), len(set(fps))), (ARCHIVE_UV, 2 * N + 1, 2 * N + 1))
        self.assertIn(mg.Msg(self.window_new).fingerprint, fps)
        uidls = dict(dc.pop3_uidls("window"))
        for uidl, fp in self.pre_uidls["window"]:
            self.assertEqual(uidls.get(uidl), fp, uidl)
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "window", ok=(0, 1))
        self.assertEqual((r.returncode, rows[0]["result"]), (0, "ok"),
                         rows[0].get("uid_mismatch_list"))

    def test_verify_flags_a_renumbered_message_twice(self):
        """A renumbered live message copied into its own folder by the
        user: two messages with one GUID (Dovecot gives a copy its
        source's GUID), which is no defect: verify stays ok (it said `uids`
        for it, exit 1, for ever: review s7 diffreview F1).  Then the copy
        shows its POP3 UIDL too: that one is (a POP3 client keeps one)."""
        dc = self.site.dc
        self.assertEqual(self.cut["twice"], 0)
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "twice")
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)
        uv, msgs = dc.mailbox("twice", "INBOX")
        top = max(m.uid for m in msgs)
        c = dc.imap("twice")
        try:
            c.select("INBOX")
            typ, data = c.uid("COPY", str(top), "INBOX")
            self.assertEqual(typ, "OK", data)
        finally:
            c.logout()
        guids = dc.doveadm("fetch", "-u", "twice", "guid", "mailbox", "INBOX", "uid",
                           "%d,%d" % (top, top + 1)).stdout.split()
        self.assertEqual((len(guids), guids[1]), (4, guids[3]), guids)
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "twice")
        self.assertEqual(rows[0]["result"], "ok", rows[0].get("uid_mismatch_list"))
        # Maildir's copy does not take the stored UIDL along: give it the
        # one the renumbered message shows (dovecot-uidlist's P field)
        fp = [m.fingerprint for m in msgs if m.uid == top][0]
        uidl = [u for u, f in dc.pop3_uidls("twice") if f == fp][0]
        path = os.path.join(dc.maildir("twice"), "dovecot-uidlist")
        with open(path) as f:
            lines = f.readlines()
        lines = [ln.replace("%d " % (top + 1), "%d P%s " % (top + 1, uidl), 1)
                 if ln.startswith("%d " % (top + 1)) else ln for ln in lines]
        with open(path + ".new", "w") as f:
            f.writelines(lines)
        os.chown(path + ".new", os.stat(path).st_uid, os.stat(path).st_gid)
        os.rename(path + ".new", path)
        cache = os.path.join(dc.maildir("twice"), "dovecot.index.cache")
        if os.path.exists(cache):
            os.unlink(cache)
        uidls = [u for u, _ in dc.pop3_uidls("twice")]
        self.assertEqual(uidls.count(uidl), 2, uidls)
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "twice", ok=(1,))
        self.assertIn("show one POP3 UIDL with another (e.g. UIDs %d and %d, UIDL %s)"
                      % (top, top + 1, uidl), rows[0]["uid_mismatch_list"])


if __name__ == "__main__":
    unittest.main()
