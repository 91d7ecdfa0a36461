"""The renumber way's move of a big live folder under the login budget
(review s7 F10, docs/imap-caches.md).

A POP3 user's live INBOX of N_LIVE messages (LMTP-filled, nobody's IMAP
cache: it goes the renumber way) and an archive INBOX of 3.  The move of
every live message above the archive's UIDNEXT used to be one step: a
POP3 login waited for all of it (about 10 s here for 1500 messages) before
its first answer, whatever backfill_login_budget said.  Now it goes in
chunks with the deadline checked between them:
- every POP3 login answers STAT within a bound far below that (the budget
  plus slack for a loaded machine: this bounds against the whole move, it
  is not a benchmark);
- no login shows a message twice or a UIDL it did not show before the
  merge (each chunk's originals go before the next chunk is copied), and
  status does not say done while the move is pending;
- once the logins have finished it, the folder is exactly what
  `doveadm backfill run` makes of a twin user in one go: UIDVALIDITY, UIDs
  in old-UID order above the archive's, flags, keywords, dates, bytes,
  POP3 UIDLs; verify ok.
Not in integration_parallel: it measures time.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402

N_LIVE = int(os.environ.get("BF_RENUMBER_LIVE", "1500"))
BUDGET = "200ms"
# login + first command: the move of 1500 messages in one step took >10 s
FIRST_ANSWER_MAX = 3.0
USERS = ("pat", "twin")
# the same with live message 5 in the archive's INBOX and Work
USERS_TWICE = ("dora", "dtwin")
CONF = bftest.CRASH_CONF
# the killed runs: 4 chunks of 100 (doveadm has no deadline, each chunk is
# full); live UIDs 150 and 250 (chunks 2 and 3) have the same bytes
N_KILLED = 350
DUP = (150, 250)


def scenario(n_live=N_LIVE, dup=None, twice=False):
    """twice: live message 5 is in the archive twice, in INBOX (after its
    3 messages) and in Work: one archived copy takes the live one (dedup),
    the other is merged."""
    g = mg.Generator(41)
    s = mg.Scenario()
    f = mg.Folder("INBOX", 1300000201)
    for i in range(3):
        t = 1500000000 + i * 3600
        f.msgs.append(mg.Msg(g.message(t, kind="plain", lines=3), set(), t))
    s.archive = [f]
    s.archive_uid_gap = 10000
    live = mg.Folder("INBOX", 1700000001)
    for i in range(n_live):
        t = 1700000000 + i
        raw = g.message(t, kind="plain", lines=3)
        if dup and i + 1 == dup[1]:
            raw = live.msgs[dup[0] - 1].raw
        live.msgs.append(mg.Msg(raw, set(), t, new=True))
    s.live = [live]
    if twice:
        raw = live.msgs[4].raw
        f.msgs.append(mg.Msg(raw, set(), 1600000000))
        work = mg.Folder("Work", 1300000202)
        work.msgs.append(mg.Msg(raw, set(), 1600000000))
        s.archive.append(work)
    return s


def view(dc, user, folder="INBOX"):
    uv, msgs = dc.mailbox(user, folder)
    return uv, [(m.uid, m.fingerprint, tuple(sorted(m.flags)), m.internaldate)
                for m in msgs]


def state(dc, user):
    rows, _ = bd.doveadm_json(dc, "backfill", "status", "-u", user)
    return rows[0]["state"]


class RenumberBudget(bftest.SiteCase):
    SITE = dict(plugin={"backfill_pop3_hide": "none",
                        "backfill_login_budget": BUDGET})

    @classmethod
    def pop3_logins(cls, site, user):
        """POP3 logins until the merge is finished: [(seconds to the first
        answer, [UIDL])], and the state status said after each login but
        the last."""
        dc = site.dc
        logins, states = [], []
        for _ in range(400):
            t0 = time.time()
            c = dc.pop3(user, timeout=600)
            try:
                c.stat()
                first = time.time() - t0
                _, lines, _ = c.uidl()
                uidls = [ln.decode().split(" ", 1)[1] for ln in lines]
            finally:
                c.quit()
            logins.append((first, uidls))
            if site.finished_lines(user):
                break
            st = state(dc, user)
            # the login that finished the merge may have answered before
            # Dovecot's log process wrote its line: only a "done" with no
            # such line after a while is one said too early
            if st == "done" and dc.wait_log_lines(
                    bftest.bf_log(user) + "merge finished", timeout=10):
                break
            states.append(st)
        return logins, states

    @classmethod
    def build(cls, site):
        for user in USERS + USERS_TWICE:
            site.add_user(user, scenario(twice=user in USERS_TWICE), record=False,
                          extra="userdb_backfill_imap_uids=archive")
        site.start(plugin_on=False)
        dc = site.dc
        # flags and keywords on some live messages, set without a SELECT
        for user in USERS:
            for uid, flags in ((1, "\\Seen"), (700, "\\Flagged $Label2"),
                               (N_LIVE, "\\Answered")):
                dc.doveadm("flags", "add", "-u", user, flags, "mailbox", "INBOX",
                           "uid", str(uid))
        cls.pre_uidls = {u: dc.pop3_uidls(u) for u in USERS}
        site.enable_plugin()
        # the twin: one uninterrupted run (doveadm has no deadline)
        t0 = time.time()
        r = bd.doveadm(dc, "backfill", "run", "-u", "twin", fmt="json")
        cls.twin_secs = time.time() - t0
        assert r.returncode == 0, r.stderr
        r = bd.doveadm(dc, "backfill", "run", "-u", "dtwin", fmt="json")
        assert r.returncode == 0, r.stderr
        cls.logins, cls.states = cls.pop3_logins(site, "pat")
        cls.dora_logins, _ = cls.pop3_logins(site, "dora")
        print("twin run %.1f s; %d POP3 logins, slowest first answer %.2f s; "
              "first answers: %s"
              % (cls.twin_secs, len(cls.logins), max(f for f, _ in cls.logins),
                 " ".join("%.2f" % f for f, _ in cls.logins)),
              file=sys.stderr)
        print("\n".join(dc.log_lines("renumbered")), file=sys.stderr)

    def test_logins_answer_within_bound(self):
        self.assertTrue(self.site.finished_lines("pat"), self.site.dc.log_tail())
        # more than one login: the move was cut by the budget (5-8 logins
        # here; what says it on any machine is the line of a login that
        # stopped at the budget)
        self.assertGreater(len(self.logins), 1)
        self.assertTrue(self.site.dc.log_lines(
            bftest.bf_log("pat") + "merge paused at the login budget"),
            self.site.dc.log_tail())
        slow = [round(f, 2) for f, _ in self.logins if f > FIRST_ANSWER_MAX]
        self.assertEqual(slow, [], "logins slower than %.1f s" % FIRST_ANSWER_MAX)

    def test_no_message_twice_and_uidls_kept(self):
        pre = {u for u, _ in self.pre_uidls["pat"]}
        for i, (_, uidls) in enumerate(self.logins):
            self.assertEqual(len(uidls), len(set(uidls)), "login %d" % i)
            self.assertTrue(pre <= set(uidls), "login %d lost %d UIDLs"
                            % (i, len(pre - set(uidls))))
            # the live ones and the archive's 3 at most
            self.assertLessEqual(len(uidls), N_LIVE + 3, "login %d" % i)

    def test_not_done_while_pending(self):
        self.assertTrue(self.states)
        self.assertNotIn("done", self.states)

    def test_same_as_uninterrupted_run(self):
        dc = self.site.dc
        uv_p, pat = view(dc, "pat")
        uv_t, twin = view(dc, "twin")
        self.assertEqual(uv_p, 1300000201)
        self.assertEqual(uv_p, uv_t)
        self.assertEqual(len(pat), N_LIVE + 3)
        self.assertEqual(pat, twin)
        # live messages above the archive's UIDs, in their old order
        live = [m for m in pat if m[0] > 30003]
        self.assertEqual(len(live), N_LIVE)
        self.assertEqual(dc.pop3_uidls("pat"), dc.pop3_uidls("twin"))
        for user in USERS:
            rows, _ = bd.doveadm_json(dc, "backfill", "verify", "-u", user)
            self.assertEqual(rows[0]["result"], "ok", rows)

    def test_dedup_kept_across_sessions(self):
        """dora's move spans logins: the live message an archived copy
        took (dedup) moved in a chunk of an earlier session, and the
        session that merges Work must still know it as taken."""
        dc = self.site.dc
        self.assertGreater(len(self.dora_logins), 2)
        twice = mg.Msg(scenario(twice=True).live[0].msgs[4].raw).fingerprint
        for user in USERS_TWICE:
            n = sum(1 for folder in ("INBOX", "Work")
                    for m in dc.mailbox(user, folder)[1] if m.fingerprint == twice)
            self.assertEqual(n, 2, user)
        for folder in ("INBOX", "Work"):
            self.assertEqual(view(dc, "dora", folder), view(dc, "dtwin", folder))

    def test_pre_uidls_on_same_messages(self):
        post = dict(self.site.dc.pop3_uidls("pat"))
        for uidl, fp in self.pre_uidls["pat"]:
            self.assertEqual(post.get(uidl), fp, uidl)

    def test_log_clean(self):
        self.site.dc.assert_log_clean()


def maildir(dc, user):
    return os.path.join(dc.home(user), "Maildir")


class RenumberKilledChunks(bftest.SiteCase):
    """A move cut between its chunks or inside one (SIGKILL at the crash
    points, the N-th chunk) and resumed gives what an uninterrupted run
    gives: each live message once, in old-UID order above the archive's
    UIDs, with its flags, dates and POP3 UIDL.  lina: killed after chunk
    2's expunge, then what a kill inside chunk 3's copy commit leaves
    (its old messages' files linked into cur/ under new names): the
    resume takes them by their bytes, and never the copy of chunk 2's
    message with the same bytes as one of chunk 3's."""
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})
    CUTS = {"kora": "renumber-copied:3", "kent": "renumber-expunged:2",
            "lina": "renumber-expunged:2"}

    @classmethod
    def build(cls, site):
        users = list(cls.CUTS) + ["ktwin"]
        for user in users:
            site.add_user(user, scenario(N_KILLED, DUP), record=False,
                          extra="userdb_backfill_imap_uids=archive")
        site.start(plugin_on=False)
        dc = site.dc
        for user in users:
            dc.doveadm("flags", "add", "-u", user, "\\Flagged $Label2", "mailbox",
                       "INBOX", "uid", "120")
        cls.pre_uidls = {u: dc.pop3_uidls(u) for u in users}
        site.enable_plugin()
        r = bd.doveadm(dc, "backfill", "run", "-u", "ktwin", fmt="json")
        assert r.returncode == 0, r.stderr
        cls.cut = {}
        for user, point in cls.CUTS.items():
            cls.cut[user] = bd.doveadm(
                dc, "backfill", "run", "-u", user, fmt="json",
                env=dict(os.environ, BACKFILL_TEST_CRASH=point))
            bftest.remove_locks(dc, user)
        cls.left = bftest.maildir_cut_commit(
            maildir(dc, "lina"), lambda uid: 200 < uid <= 300, link=True)
        cls.rerun = {u: bd.doveadm(dc, "backfill", "run", "-u", u, fmt="json")
                     for u in cls.CUTS}

    def test_cut(self):
        for user, r in self.cut.items():
            self.assertEqual(r.returncode, -9, (user, r.stderr))
        self.assertEqual(self.left, 100)
        for user, r in self.rerun.items():
            self.assertEqual(r.returncode, 0, (user, r.stderr))

    def test_same_as_uninterrupted(self):
        dc = self.site.dc
        twin = view(dc, "ktwin")
        twin_uidls = dc.pop3_uidls("ktwin")
        self.assertEqual(len(twin[1]), N_KILLED + 3)
        for user in self.CUTS:
            got = view(dc, user)
            uidls = dc.pop3_uidls(user)
            if user == "lina":
                # the cut commit's copies take the UIDs in the order
                # Dovecot found their files: the rest is the same
                self.assertEqual(got[0], twin[0])
                self.assertEqual(sorted(m[1:] for m in got[1]),
                                 sorted(m[1:] for m in twin[1]), user)
                self.assertEqual(sorted(uidls), sorted(twin_uidls), user)
            else:
                self.assertEqual(got, twin, user)
                self.assertEqual(uidls, twin_uidls, user)
            pre = dict(self.pre_uidls[user])
            post = dict(uidls)
            for uidl, fp in pre.items():
                self.assertEqual(post.get(uidl), fp, (user, uidl))
            rows, _ = bd.doveadm_json(dc, "backfill", "verify", "-u", user)
            self.assertEqual(rows[0]["result"], "ok", (user, rows))


if __name__ == "__main__":
    unittest.main()
