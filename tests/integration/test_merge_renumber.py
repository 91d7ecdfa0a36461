"""Issue 19 part 2: an existing live folder with mail no IMAP client cached
is renumbered in place (docs/imap-caches.md, the renumber way).

The story: the old server's folders have years of mail, so their lowest
kept UID is high (the archive's UIDs are 301, 602, ...: 300 expunged before
each).  During the incident the new server's INBOX got mail by LMTP (one
of it flagged and keyworded by doveadm, which drops no \\Recent), some of
it carrying a stored POP3 UIDL from an earlier merge, and a sieve-like
rule filed mail into Work (user+Work), which nobody opened.  The new-era
POP3 client (pop3_no_flag_updates = yes) polled.  After the merge:
- INBOX and Work show the archive's UIDVALIDITY, every archived message
  at its archive UID, and the live messages from the archive's UIDNEXT
  plus backfill_imap_uid_margin (100000) on,
  ascending in their old order, with their flags, keywords and dates;
- the new-era POP3 client sees every UIDL it knew on the same message
  (also where pop3_uidl_format = %08Xu%08Xv computed it from the old UID
  and UIDVALIDITY), and the old-era one the old server's;
- status says renumber (no-imap-client; with backfill_imap_uids = archive
  over a phone's SELECT: setting); verify is ok and fails (uids) once a
  renumbered message lost its stored UIDL (Maildir) or a folder's
  UIDVALIDITY is changed;
- an archived message that duplicates renumbered live mail is not copied;
  the live copy moves up with the others;
- a live folder whose UIDNEXT is already above the lowest archive UID
  goes live (live-uids-overlap), keeping its UIDs;
- revert refuses (exit 1, nothing changed) a user with a renumbered
  folder, naming it, and with --keep-renumbered removes the merged mail
  and leaves the live mail at its new UIDs with its UIDLs;
- SIGKILL at each step (after the decision is on record, after the
  UIDVALIDITY change, between batches, after the move is on record,
  between the move's copy and expunge commits, after the move before its
  record): the rerun gives the same mailbox as an uninterrupted run;
- a kill after the decision is on record, then before the next run a
  phone SELECTs the INBOX, or mail is delivered: the rerun decides again
  (review s7 F3): the phone's INBOX stays live with the UIDVALIDITY and
  UIDs it cached (imap-selected), the delivered mail is renumbered with
  the rest (one UIDVALIDITY change, to the archive's; POP3 UIDLs seen
  between the runs kept).
On Maildir and on mdbox.
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg  # noqa: E402
import imapcache  # noqa: E402

GAP = 300
MARGIN = 100000  # backfill_imap_uid_margin's default
UV = {"INBOX": 1300000201, "Work": 1300000202}
N_ARCH = {"INBOX": 6, "Work": 4}
LIVE_INBOX, LIVE_WORK = 4, 2
# stored UIDLs of live INBOX messages from an earlier merge (Maildir only)
EARLIER = ["old-merge-uidl-1", "old-merge-uidl-2"]
KILLS = ("renumber-decided", "renumber-uidvalidity", "batch-checkpointed",
         "renumber-intent", "renumber-copied", "renumber-expunged")
CONF = ("recipient_delimiter = +\nlmtp_save_to_detail_mailbox = yes\n"
        # doveconf passes only these to doveadm (the kill points)
        + bftest.CRASH_CONF)


def archive_uids(n):
    return [(GAP + 1) * (i + 1) for i in range(n)]


def scenario(seed, earlier=True, dup=False):
    """dup: the archive's INBOX ends with a message that is also one of the
    live INBOX's (the same mail delivered again during the incident)."""
    g = mg.Generator(seed)
    s = mg.Scenario()
    for k, (name, uv) in enumerate(sorted(UV.items(), key=lambda kv: kv[1])):
        f = mg.Folder(name, uv)
        for i in range(N_ARCH[name]):
            t = 1500000000 + k * 86400 + i * 3600
            f.msgs.append(mg.Msg(g.message(t), g.flags(name), t))
        s.archive.append(f)
    s.archive_uid_gap = GAP
    inbox = mg.Folder("INBOX", 1700000001)
    if earlier:
        for i, uidl in enumerate(EARLIER):
            t = 1699000000 + i * 60
            inbox.msgs.append(mg.Msg(g.message(t, kind="plain"), set(), t,
                                     pop3_uidl=uidl, new=True))
    s.live = [inbox]
    s.later = [g.message(1700000000 + i * 60, kind="plain") for i in range(LIVE_INBOX)]
    s.later_work = [g.message(1700001000 + i * 60, kind="plain") for i in range(LIVE_WORK)]
    if dup:
        inbox_arch = [f for f in s.archive if f.name == "INBOX"][0]
        inbox_arch.msgs.append(mg.Msg(s.later[1], set(), 1600000000))
    return s


def incident(site, user, scen):
    dc = site.dc
    # Work exists (LMTP files into existing folders only), nobody opens it
    dc.doveadm("mailbox", "create", "-u", user, "Work")
    for raw in scen.later:
        dc.lmtp_deliver(user, raw)
    for raw in scen.later_work:
        dc.lmtp_deliver("%s+Work" % user, raw)
    # a flag and a keyword on one live message, set without a SELECT
    uids = [m.uid for m in dc.mailbox(user, "INBOX")[1]]
    dc.doveadm("flags", "add", "-u", user, "\\Flagged $Label2", "mailbox", "INBOX",
               "uid", str(uids[-2]))
    dc.doveadm("flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX",
               "uid", str(uids[0]))


def view(dc, user):
    """{folder: (uidvalidity, [(uid, fingerprint, flags, date)])}."""
    out = {}
    for name in ("INBOX", "Work"):
        uv, msgs = dc.mailbox(user, name)
        out[name] = (uv, [(m.uid, m.fingerprint, tuple(sorted(m.flags)), m.internaldate)
                          for m in msgs])
    return out


def ways(dc, user):
    rows, _ = bd.doveadm_json(dc, "backfill", "status", "-u", user)
    return rows[0]["uid_ways"], rows[0]["uid_way_reasons"]


def run(dc, user, env=None):
    return bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json", env=env)


class Renumber(bftest.SiteCase):
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})
    MAIL_LOCATION = None
    EARLIER = True
    # user: (backfill_imap_uids, seed, the phone SELECTs INBOX, live
    # UIDNEXT raised above the archive's first UID).  Only aria's INBOX
    # holds mail with stored UIDLs from an earlier merge: Dovecot takes
    # mail it finds in dovecot-uidlist for mail someone saw (not \Recent),
    # which auto would count as a client.
    USERS = {"rita": ("auto", 31, False, False),
             "aria": ("archive", 32, True, False),
             "olga": ("auto", 33, False, True)}
    WITH_EARLIER = ("aria",)

    @classmethod
    def build(cls, site):
        if cls.MAIL_LOCATION:
            site.dc.mail_location = cls.MAIL_LOCATION
        cls.scen = {}
        for user, (mode, seed, _, _) in cls.USERS.items():
            cls.scen[user] = scenario(seed, earlier=cls.EARLIER and
                                      user in cls.WITH_EARLIER,
                                      dup=user == "rita")
            site.add_user(user, cls.scen[user], record=False,
                          extra="userdb_backfill_imap_uids=%s" % mode)
        site.start(plugin_on=False)
        dc = site.dc
        cls.pre, cls.pre_uidls = {}, {}
        for user, (_, _, phone, overlap) in cls.USERS.items():
            if overlap:
                dc.doveadm("mailbox", "update", "-u", user, "--min-next-uid", "1000", "INBOX")
            incident(site, user, cls.scen[user])
            if phone:
                c = dc.imap(user)
                try:
                    c.select("INBOX")
                finally:
                    c.logout()
            cls.pre[user] = view(dc, user)
            cls.pre_uidls[user] = dc.pop3_uidls(user)
        site.enable_plugin()
        cls.runs = {}
        for user in cls.USERS:
            r = run(dc, user)
            cls.runs[user] = r
            assert r.returncode == 0, r.stderr
        cls.post = {u: view(dc, u) for u in cls.USERS}
        cls.post_uidls = {u: dc.pop3_uidls(u) for u in cls.USERS}

    def check_renumbered(self, user, dup=0, folders=("INBOX", "Work")):
        scen = self.scen[user]
        for f in [f for f in scen.archive if f.name in folders]:
            uv, msgs = self.post[user][f.name]
            self.assertEqual(uv, f.uidvalidity, (user, f.name))
            want = archive_uids(len(f.msgs))
            archived = [m for m in msgs if m[0] < want[-1] + 1]
            # the last archived INBOX message of a dup scenario is a live
            # one's duplicate: not copied
            n = len(f.msgs) - (dup if f.name == "INBOX" else 0)
            self.assertEqual([m[0] for m in archived], want[:n], (user, f.name))
            self.assertEqual([m[1] for m in archived], [m.fingerprint for m in f.msgs][:n])
            live = [m for m in msgs if m[0] > want[-1]]
            pre = self.pre[user][f.name][1]
            base = want[-1] + 1 + MARGIN
            self.assertEqual([m[0] for m in live], list(range(base, base + len(pre))),
                             (user, f.name))
            # same order, flags, keywords, dates
            self.assertEqual([m[1:] for m in live], [m[1:] for m in pre], (user, f.name))

    def test_auto_renumbers_folders_nobody_opened(self):
        self.check_renumbered("rita", dup=1)
        self.assertEqual(ways(self.site.dc, "rita"),
                         ("INBOX=renumber,Work=renumber",
                          "INBOX=no-imap-client,Work=no-imap-client"))

    def test_archive_setting_renumbers_a_selected_inbox(self):
        self.check_renumbered("aria")
        self.assertEqual(ways(self.site.dc, "aria"),
                         ("INBOX=renumber,Work=renumber", "INBOX=setting,Work=no-imap-client"))

    def test_duplicate_of_renumbered_live_mail_is_not_copied(self):
        """The archived message that is also a live one's: the live copy
        moves up with the others, nothing is there twice (the old client
        downloads that one message again at its new UID)."""
        rows, _ = bd.doveadm_json(self.site.dc, "backfill", "status", "-u", "rita")
        self.assertEqual(rows[0]["duplicates"], "1")
        fps = [m[1] for m in self.post["rita"]["INBOX"][1]]
        self.assertEqual(len(fps), len(set(fps)))
        dup = mg.Msg(self.scen["rita"].later[1]).fingerprint
        self.assertIn(dup, fps)

    def live_after(self, user, folder):
        f = [f for f in self.scen[user].archive if f.name == folder][0]
        last = archive_uids(len(f.msgs))[-1]
        return [m for m in self.post[user][folder][1] if m[0] > last]

    def test_flags_and_keywords_kept(self):
        for user in ("rita", "aria"):
            live = [m for m in self.live_after(user, "INBOX") if "$Label2" in m[2]]
            self.assertEqual(len(live), 1, user)
            self.assertIn("\\Flagged", live[0][2])
            seen = [m for m in self.live_after(user, "INBOX") if "\\Seen" in m[2]]
            self.assertEqual(len(seen), 1, user)

    def test_overlap_falls_back_to_live(self):
        self.assertEqual(ways(self.site.dc, "olga"),
                         ("INBOX=live,Work=renumber", "INBOX=live-uids-overlap,Work=no-imap-client"))
        uv, msgs = self.post["olga"]["INBOX"]
        pre_uv, pre = self.pre["olga"]["INBOX"]
        self.assertEqual(uv, pre_uv)
        self.assertEqual(msgs[:len(pre)], pre)
        self.assertIn("live-uids-overlap", self.runs["olga"].stderr + self.site.dc.log_tail())

    def test_pop3_new_era_sees_the_same_uidls(self):
        for user in self.USERS:
            post = dict(self.post_uidls[user])
            for uidl, fp in self.pre_uidls[user]:
                self.assertEqual(post.get(uidl), fp, "%s: UIDL %s" % (user, uidl))
            uidls = [u for u, _ in self.post_uidls[user]]
            self.assertEqual(len(uidls), len(set(uidls)), user)
        if self.EARLIER:
            self.assertTrue(set(EARLIER) <= {u for u, _ in self.pre_uidls["aria"]})

    def test_pop3_old_era_sees_the_old_uidls(self):
        for user in self.USERS:
            f = [f for f in self.scen[user].archive if f.name == "INBOX"][0]
            # (not rita's duplicate of a live message: it was not copied)
            live = {mg.Msg(raw).fingerprint for raw in self.scen[user].later}
            want = {"%08x%08x" % (uid, f.uidvalidity): m.fingerprint
                    for uid, m in zip(archive_uids(len(f.msgs)), f.msgs)
                    if m.fingerprint not in live}
            post = dict(self.post_uidls[user])
            for uidl, fp in want.items():
                self.assertEqual(post.get(uidl), fp, "%s: old UIDL %s" % (user, uidl))

    def test_verify_and_tamper(self):
        dc = self.site.dc
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "rita")
        self.assertEqual((rows[0]["result"], rows[0]["uid_mismatches"]), ("ok", "0"),
                         r.stdout + r.stderr)
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "aria")
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)

    def revert_refused_then_kept(self, folder):
        """revert refuses aria (naming folder), then --keep-renumbered
        reverts: the view before."""
        dc = self.site.dc
        before = view(dc, "aria")
        r = bd.doveadm(dc, "backfill", "revert", "-u", "aria", "-y")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("renumbered", r.stderr)
        self.assertIn(folder, r.stderr)
        self.assertIn("--keep-renumbered", r.stderr)
        self.assertEqual(view(dc, "aria"), before)
        r = bd.doveadm(dc, "backfill", "revert", "-u", "aria", "-y", "--keep-renumbered")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return before

    def test_z_revert_refuses_then_keeps_renumbered(self):
        dc = self.site.dc
        before = self.revert_refused_then_kept("INBOX")
        # (the IMAP login that reads it merges again: the user is pending,
        # and those copies go above, the live way)
        after = view(dc, "aria")
        for name in ("INBOX", "Work"):
            uv, msgs = after[name]
            self.assertEqual(uv, UV[name])
            live = [m for m in before[name][1] if m[0] > archive_uids(N_ARCH[name])[-1]]
            self.assertEqual(msgs[:len(live)], live, name)
        post = dict(dc.pop3_uidls("aria"))
        for uidl, fp in self.pre_uidls["aria"]:
            self.assertEqual(post.get(uidl), fp, uidl)

    def test_z_verify_fails_when_tampered(self):
        dc = self.site.dc
        if self.MAIL_LOCATION is None:
            # a renumbered live message's stored UIDL is lost (its UIDL
            # would then be computed from its new UID)
            path = os.path.join(dc.home("rita"), "Maildir", "dovecot-uidlist")
            with open(path) as f:
                lines = f.readlines()
            inbox = [f for f in self.scen["rita"].archive if f.name == "INBOX"][0]
            base = archive_uids(len(inbox.msgs))[-1] + 1 + MARGIN
            lines = [re.sub(r" P\S+", "", ln) if ln.startswith("%d " % base) else ln
                     for ln in lines]
            with open(path + ".new", "w") as f:
                f.writelines(lines)
            os.chown(path + ".new", os.stat(path).st_uid, os.stat(path).st_gid)
            os.rename(path + ".new", path)
            # and Dovecot's cached copy of it
            cache = os.path.join(dc.home("rita"), "Maildir", "dovecot.index.cache")
            if os.path.exists(cache):
                os.unlink(cache)
            rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "rita", ok=(1,))
            self.assertEqual(rows[0]["result"], "uids")
            self.assertIn("no longer show the POP3 UIDL they showed (e.g. UID %d)" % base,
                          rows[0]["uid_mismatch_list"])
        dc.doveadm("mailbox", "update", "-u", "rita", "--uid-validity", "1234", "Work")
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "rita", ok=(1,))
        self.assertEqual(rows[0]["result"], "uids")
        self.assertIn("has UIDVALIDITY 1234", rows[0]["uid_mismatch_list"])


class RenumberMdbox(Renumber):
    """mdbox cannot store a POP3 UIDL in place: with pop3_uidl_format =
    %08Xu%08Xv a renumbered INBOX would show POP3 sessions other UIDLs from
    its new UIDVALIDITY until the move.  So the INBOX goes live
    (pop3-uidls-unstorable); Work, which POP3 does not show, is still
    renumbered."""
    MAIL_LOCATION = "mdbox:~/mdbox"
    # a stored UIDL in a live mdbox comes from a save that set one: not
    # what LMTP does; the Maildir case covers it
    EARLIER = False

    def check_inbox_live(self, user):
        uv, msgs = self.post[user]["INBOX"]
        pre_uv, pre = self.pre[user]["INBOX"]
        self.assertEqual(uv, pre_uv, user)
        self.assertEqual(msgs[:len(pre)], pre, user)

    def check_inbox_live_work_renumbered(self, user):
        self.check_renumbered(user, folders=("Work",))
        self.check_inbox_live(user)
        self.assertEqual(ways(self.site.dc, user),
                         ("INBOX=live,Work=renumber",
                          "INBOX=pop3-uidls-unstorable,Work=no-imap-client"))

    def test_auto_renumbers_folders_nobody_opened(self):
        self.check_inbox_live_work_renumbered("rita")
        self.assertIn("pop3-uidls-unstorable",
                      self.runs["rita"].stderr + self.site.dc.log_tail())

    def test_archive_setting_renumbers_a_selected_inbox(self):
        self.check_inbox_live_work_renumbered("aria")

    def test_flags_and_keywords_kept(self):
        for user in ("rita", "aria"):
            self.check_inbox_live(user)

    def test_z_revert_refuses_then_keeps_renumbered(self):
        self.revert_refused_then_kept("Work")
        post = dict(self.site.dc.pop3_uidls("aria"))
        for uidl, fp in self.pre_uidls["aria"]:
            self.assertEqual(post.get(uidl), fp, uidl)


class Killed(bftest.SiteCase):
    """SIGKILL at each step of a renumbering (BACKFILL_TEST_CRASH makes the
    process kill itself there); the rerun's mailbox equals an uninterrupted
    run's.  backfill_imap_uids = archive, so that the INBOX's mail with
    stored UIDLs from an earlier merge is renumbered too."""

    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})
    MAIL_LOCATION = None

    @classmethod
    def build(cls, site):
        if cls.MAIL_LOCATION:
            site.dc.mail_location = cls.MAIL_LOCATION
        cls.users = ["ref"] + ["k%d" % i for i in range(len(KILLS))]
        earlier = cls.MAIL_LOCATION is None
        # cut inside Maildir's commit of the move's copies (Maildir only)
        cls.cut_commit = ["kc"] if cls.MAIL_LOCATION is None else []
        for user in cls.users + cls.cut_commit:
            site.add_user(user, scenario(40, earlier=earlier), record=False,
                          extra="userdb_backfill_imap_uids=archive")
        site.start(plugin_on=False)
        dc = site.dc
        cls.pre, cls.pre_uidls = {}, {}
        for user in cls.users + cls.cut_commit:
            incident(site, user, scenario(40, earlier=earlier))
            cls.pre[user] = view(dc, user)
            cls.pre_uidls[user] = dc.pop3_uidls(user)
        site.enable_plugin()
        cls.killed, cls.final, cls.mid_uidls = {}, {}, {}
        r = run(dc, "ref")
        assert r.returncode == 0, r.stderr
        for user, point in list(zip(cls.users[1:], KILLS)) + [
                (u, "renumber-intent") for u in cls.cut_commit]:
            env = dict(os.environ, BACKFILL_TEST_CRASH=point)
            r = run(dc, user, env=env)
            cls.killed[user] = r.returncode
            bftest.remove_locks(dc, user)
        for user in cls.cut_commit:
            # Dovecot's hardlink copy of the move, killed before its
            # dovecot-uidlist write: each live INBOX message (UID below
            # the archive's first) linked under a new name
            first = archive_uids(1)[0]
            bftest.maildir_cut_commit(dc.maildir(user), lambda uid: uid < first,
                                      link=True)
        # what a POP3 session sees between the cut run and the rerun (a
        # POP3 login would resume the merge: the plugin is off meanwhile)
        dc.restart(mail_plugins="")
        for user in cls.users[1:]:
            cls.mid_uidls[user] = dc.pop3_uidls(user)
        site.enable_plugin()
        for user in cls.users[1:] + cls.cut_commit:
            r = run(dc, user)
            cls.final[user] = (r.returncode, r.stderr)
        cls.post = {u: view(dc, u) for u in cls.users + cls.cut_commit}
        cls.post_uidls = {u: dc.pop3_uidls(u) for u in cls.users + cls.cut_commit}

    def test_cut_inside_the_copies_commit(self):
        """A kill inside Dovecot's Maildir commit of the move's copies
        (each live message's file hardlinked into cur/ under a new name,
        dovecot-uidlist not written): the rerun takes those files as the
        copies (by content, their GUID is their new name): each message
        once, with the flags and POP3 UIDLs of an uninterrupted run."""
        if not self.cut_commit:
            self.skipTest("Maildir only")
        user = self.cut_commit[0]
        self.assertEqual(self.killed[user], -9)
        self.assertEqual(self.final[user][0], 0, self.final[user][1])

        def content(v):
            return {f: (uv, sorted(m[1:3] for m in msgs)) for f, (uv, msgs) in v.items()}
        self.assertEqual(content(self.post[user]), content(self.post["ref"]))
        post = self.post_uidls[user]
        self.assertTrue(set(self.pre_uidls[user]) <= set(post),
                        set(self.pre_uidls[user]) - set(post))
        self.assertEqual(len(post), len({u for u, _ in post}))
        self.assertEqual(len(post), len(self.post_uidls["ref"]))
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", user)
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)

    def test_every_point_was_killed(self):
        for user, point in zip(self.users[1:], KILLS):
            self.assertEqual(self.killed[user], -9, "%s: %s not reached" % (user, point))
            self.assertEqual(self.final[user][0], 0, self.final[user][1])

    def test_same_mailbox_as_uninterrupted(self):
        """Same UIDVALIDITY, UIDs, messages and flags as the uninterrupted
        run; each live message keeps its own date (LMTP gave each user's
        copy its own)."""
        def undated(v):
            return {f: (uv, [m[:3] for m in msgs]) for f, (uv, msgs) in v.items()}
        ref = undated(self.post["ref"])
        self.assertEqual(ref["INBOX"][0], UV["INBOX"])
        for user, point in zip(self.users, ("none",) + KILLS):
            self.assertEqual(undated(self.post[user]), ref, "killed at %s" % point)
            for f, (_, pre) in self.pre[user].items():
                last = archive_uids(N_ARCH[f])[-1]
                live = [m for m in self.post[user][f][1] if m[0] > last]
                self.assertEqual([m[1:] for m in live], [m[1:] for m in pre],
                                 "killed at %s: %s" % (point, f))

    def test_same_uidls_as_uninterrupted(self):
        """Each user's POP3 client sees the UIDLs it saw before, on the same
        messages, and the merged ones the uninterrupted run shows (a live
        mdbox INBOX's own UIDVALIDITY differs per user: compared apart)."""
        def added(user):
            return sorted(set(self.post_uidls[user]) - set(self.pre_uidls[user]))
        for user, point in zip(self.users, ("none",) + KILLS):
            post = self.post_uidls[user]
            self.assertTrue(set(self.pre_uidls[user]) <= set(post),
                            "killed at %s: %s" % (point, set(self.pre_uidls[user]) - set(post)))
            self.assertEqual(len(post), len({u for u, _ in post}), "killed at %s" % point)
            self.assertEqual(added(user), added("ref"), "killed at %s" % point)

    def test_status_and_verify(self):
        dc = self.site.dc
        for user in self.users:
            self.assertEqual(ways(dc, user)[0], "INBOX=renumber,Work=renumber", user)
            rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", user)
            self.assertEqual(rows[0]["result"], "ok", user + r.stdout + r.stderr)


class DecidedThenChanged(bftest.SiteCase):
    """Cut at renumber-decided (the way on record, nothing changed); before
    the rerun, phone: a phone syncs the INBOX (SELECT); mailed: one more
    LMTP delivery, which a POP3 client lists.  The rerun must not act on
    the stale decision."""

    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.live = {}
        for i, user in enumerate(("phone", "mailed")):
            g = mg.Generator(70 + i)
            s = mg.Scenario()
            f = mg.Folder("INBOX", UV["INBOX"])
            for k in range(3):
                t = 1500000000 + k * 3600
                f.msgs.append(mg.Msg(g.message(t, kind="plain"), set(), t))
            s.archive = [f]
            s.archive_uid_gap = GAP
            s.live = [mg.Folder("INBOX", 1700000001)]
            site.add_user(user, s, record=False)
            cls.live[user] = [g.message(1700000000 + k, kind="plain") for k in range(4)]
        site.start(plugin_on=False)
        dc = site.dc
        for user in ("phone", "mailed"):
            for raw in cls.live[user][:3]:
                dc.lmtp_deliver(user, raw)
        site.enable_plugin()
        cls.cut = {}
        for user in ("phone", "mailed"):
            r = run(dc, user, env=dict(os.environ, BACKFILL_TEST_CRASH="renumber-decided"))
            cls.cut[user] = (r.returncode, ways(dc, user))
            bftest.remove_locks(dc, user)
        # between the runs (plugin off: a login would resume the merge)
        dc.restart(mail_plugins="")
        cls.phone = imapcache.CacheClient("phone", "127.0.0.1", dc.ports["imap"], "phone",
                                          dv.PASSWORD)
        cls.phone_first = cls.phone.sync(["INBOX"])["INBOX"]
        dc.lmtp_deliver("mailed", cls.live["mailed"][3])
        cls.mid_uidls = dc.pop3_uidls("mailed")
        site.enable_plugin()
        cls.rerun = {u: run(dc, u) for u in ("phone", "mailed")}

    def test_cut_after_the_decision(self):
        for user in ("phone", "mailed"):
            self.assertEqual(self.cut[user], (-9, ("INBOX=renumber", "INBOX=no-imap-client")),
                             user)
            self.assertEqual(self.rerun[user].returncode, 0, self.rerun[user].stderr)

    def test_phone_that_synced_since_keeps_its_cache(self):
        dc = self.site.dc
        self.assertEqual(self.phone_first.uidvalidity, 1700000001)
        self.assertEqual(ways(dc, "phone"), ("INBOX=live", "INBOX=imap-selected"))
        r = self.phone.sync(["INBOX"])["INBOX"]
        self.assertIsNone(r.invalidated)
        uv, msgs = dc.mailbox("phone", "INBOX")
        self.assertEqual(uv, 1700000001)
        self.assertEqual([m.uid for m in msgs], [1, 2, 3, 4, 5, 6])

    def test_mail_delivered_since_is_renumbered_with_the_rest(self):
        dc = self.site.dc
        self.assertEqual(ways(dc, "mailed"), ("INBOX=renumber", "INBOX=no-imap-client"))
        uv, msgs = dc.mailbox("mailed", "INBOX")
        base = archive_uids(3)[-1] + 1 + MARGIN
        self.assertEqual((uv, [m.uid for m in msgs]),
                         (UV["INBOX"], archive_uids(3) + [base, base + 1, base + 2, base + 3]))
        self.assertEqual([m.fingerprint for m in msgs[3:]],
                         [mg.Msg(raw).fingerprint for raw in self.live["mailed"]])
        post = dict(dc.pop3_uidls("mailed"))
        for uidl, fp in self.mid_uidls:
            self.assertEqual(post.get(uidl), fp, uidl)
        self.assertNotIn("UIDVALIDITY changed", self.rerun["mailed"].stderr + dc.log_tail())
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "mailed")
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)


class KilledMdbox(Killed):
    """On mdbox the INBOX goes live (pop3-uidls-unstorable) and Work is
    renumbered: every kill point is reached in Work, and the INBOX's POP3
    UIDLs never change, not even after a run cut right after a folder took
    the archive's UIDVALIDITY."""
    MAIL_LOCATION = "mdbox:~/mdbox"

    def test_same_mailbox_as_uninterrupted(self):
        def undated(v):
            return {f: (uv, [m[:3] for m in msgs]) for f, (uv, msgs) in v.items()}
        ref = undated(self.post["ref"])
        self.assertEqual(ref["Work"][0], UV["Work"])
        for user, point in zip(self.users, ("none",) + KILLS):
            post = undated(self.post[user])
            self.assertEqual(post["Work"], ref["Work"], "killed at %s" % point)
            uv, msgs = self.post[user]["INBOX"]
            pre_uv, pre = self.pre[user]["INBOX"]
            self.assertEqual(uv, pre_uv, "killed at %s" % point)
            self.assertEqual(msgs[:len(pre)], pre, "killed at %s" % point)
            self.assertEqual([m[1:] for m in post["INBOX"][1]],
                             [m[1:] for m in ref["INBOX"][1]], "killed at %s" % point)

    def test_pop3_uidls_never_change(self):
        """Before, after the cut run and after the rerun: every UIDL a
        POP3 client saw stays on its message (the killed run at
        renumber-uidvalidity included)."""
        self.assertIn("renumber-uidvalidity", KILLS)
        for user, point in zip(self.users[1:], KILLS):
            for when, uidls in (("after the cut run", self.mid_uidls[user]),
                                ("after the rerun", self.post_uidls[user])):
                got = dict(uidls)
                for uidl, fp in self.pre_uidls[user]:
                    self.assertEqual(got.get(uidl), fp, "killed at %s, %s: UIDL %s"
                                     % (point, when, uidl))
        # the old era's UIDLs, once merged, never change either
        for user, point in zip(self.users[1:], KILLS):
            mid = set(self.mid_uidls[user]) - set(self.pre_uidls[user])
            self.assertTrue(mid <= set(self.post_uidls[user]),
                            "killed at %s: %s" % (point, mid - set(self.post_uidls[user])))

    def test_status_and_verify(self):
        dc = self.site.dc
        for user in self.users:
            self.assertEqual(ways(dc, user), ("INBOX=live,Work=renumber",
                                              "INBOX=pop3-uidls-unstorable,Work=no-imap-client"),
                             user)
            rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", user)
            self.assertEqual(rows[0]["result"], "ok", user + r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
