"""Issue 19 with real clients: IMAP clients of the old server keep their
caches after the merge (and POP3 clients of both eras download nothing
again).

The story, with real parts:
  1. The OLD server (a private plain Dovecot) serves a Maildir with INBOX,
     Sent, Projects.Work, Trash and Drafts, non-default UIDVALIDITYs,
     years of mail behind it (each folder's first UID is in the hundreds
     or thousands, a different one per folder, as after years of
     deliveries and expunges), and UID gaps made by really expunging mail
     on it (the first UID of each folder too).
     Four clients sync from it: a laptop running mbsync (isync), a
     Thunderbird-like cache (tests/lib/imapcache.py: drops a folder's
     cache when its UIDVALIDITY changes), a phone (the same kind of
     cache) and an old-era POP3 client (poplib, leave mail on server:
     it remembers the UIDLs it has).
  2. The disaster: the old server's Maildir, dovecot-uidlist and indexes
     included, becomes the restored archive of a NEW live server (another
     private Dovecot, backfill plugin not yet enabled) that started
     empty; it auto-creates Drafts, Junk, Trash and Sent.
  3. The incident: 4 mails arrive in INBOX (LMTP); 3 sent mails are
     filed into Sent by LMTP (user+Sent, a BCC-to-self rule), so Sent
     exists live with mail although no IMAP client ever opened it; the
     phone syncs INBOX and Drafts (its app opens those) from the new
     server,
     the user reads one mail there and flags another ($Label2); 2 more
     mails arrive; a new-era POP3 client polls (6 UIDLs).
  4. The merge: the plugin is enabled; ada's merge runs at her IMAP
     login, arc's by `doveadm backfill run -u arc`, liv's at her POP3
     logins (one budget each).
  5. Every client syncs again from the new server (same credentials).

Three users live the same story, one per backfill_imap_uids value
(userdb_backfill_imap_uids): ada auto, arc archive, liv live.

Which way each archive folder goes (status' uid_ways):
           INBOX     Sent      Projects.Work  Trash        Drafts
  auto     live (1)  renumber  archive (2)    archive (3)  live (4)
  archive  renumber  renumber  archive        archive      archive
  live     live      live      live (5)       live         live
  (1) the phone opened INBOX during the incident (reason imap-selected).
  (2) the merge creates it.
  (3) Dovecot lists it (auto = subscribe) but nobody opened it, so it
      does not exist yet: the merge creates it.
  (4) the phone opened it, empty (Dovecot made it then): a client may
      know its UIDVALIDITY, auto keeps it live (docs/imap-caches.md,
      live-folder-opened); archive takes the archive's (live-folder-empty).
  (5) a fresh UIDVALIDITY, as before issue 19.

What each client downloads per folder after the merge, with A the
archive's messages of the folder (the old server's, after expunges), L
the live messages at the merge (INBOX 6, Sent 3, others 0) and P
the live messages the phone had cached (INBOX 4, Drafts 0):
  way archive/renumber: the folder shows the old server's UIDVALIDITY and
      UIDs (live mail renumbered above the old UIDNEXT: the live folder
      gave out UIDs 1-6 during the incident, all below the old server's
      lowest, which is what renumbering in place needs).
      laptop (mbsync) and Thunderbird: L (only mail new to them), no
      refusal.  Phone: L if its cache of the folder is the old server's;
      A+L if it synced the folder during the incident (its cache had the
      live UIDVALIDITY): the price `archive` pays for INBOX.
  way live: the folder shows the live UIDVALIDITY.
      Thunderbird: A+L, all A of them downloaded again.  Laptop: mbsync
      refuses the folder ("UIDVALIDITY genuinely changed": the UIDs it
      knows now hold other messages) and pulls nothing; once the user
      resets its state it pulls A+L again, A of them duplicates of what
      it has.  Phone: A + (L-P) (restored mail and mail new since its last
      sync) if it synced the folder during the incident, else A+L.
  Junk, not in the archive: empty, 0 for all.
So under auto the laptop and Thunderbird re-read INBOX (26+6 here): the
one folder an IMAP client opened during the incident keeps the live
UIDVALIDITY, so whoever cached it from the old server must re-read it.
That is unavoidable (renumbering it would make the phone re-read it), and
the test checks it as such rather than hiding it.  Under auto they re-read
Drafts as well, which archive avoids at no cost: a client that cached an
empty folder loses nothing when its UIDVALIDITY changes
(test_imap_clients_harness: Thunderbird has nothing to drop, mbsync
recovers), so under archive the phone downloads Drafts' restored mail as
it would under live and the old clients nothing.  Under live (and on the
code before issue 19) the laptop refuses all three folders and every
cache client of the old server downloads everything again.

POP3, every user: the old-era client downloads only the 6 live mails
(every restored message shows the UIDL the old server showed, or is
hidden); the new-era client downloads only restored mail it never had
(unseen ones; \\Seen ones are hidden), never one of the 6 it has, also
where INBOX was renumbered.
"""
import collections
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
from bftest import dv, mg  # noqa: E402
import imapcache  # noqa: E402
import mbsync  # noqa: E402

FOLDERS = ("INBOX", "Sent", "Projects.Work", "Trash", "Drafts")
# user: (backfill_imap_uids, seed)
USERS = {"ada": ("auto", 1), "arc": ("archive", 2), "liv": ("live", 3)}
WAYS = {
    "auto": {"INBOX": "live", "Sent": "renumber", "Projects.Work": "archive",
             "Trash": "archive", "Drafts": "live"},
    "archive": {"INBOX": "renumber", "Sent": "renumber", "Projects.Work": "archive",
                "Trash": "archive", "Drafts": "archive"},
    "live": {"INBOX": "live", "Sent": "live", "Projects.Work": "live", "Trash": "live",
             "Drafts": "live"},
}
# how each user's merge runs: IMAP login, POP3 logins, doveadm backfill run
MERGE_BY = {"ada": "imap", "arc": "doveadm", "liv": "pop3"}
# messages the old server got per folder, before expunges
SIZES = {"INBOX": 40, "Sent": 16, "Projects.Work": 10, "Trash": 8, "Drafts": 6}
UV_BASE = 1234500000
# the UID each folder's mail starts after on the old server: years of
# mail delivered and expunged before the story begins
FIRST_UID = {"INBOX": 5000, "Sent": 2100, "Projects.Work": 870, "Trash": 3400,
             "Drafts": 120}
LIVE_EARLY, LIVE_LATE, LIVE_SENT = 4, 2, 3
# folders the phone's app opened during the incident
PHONE_OPENED = ("INBOX", "Drafts")
EMPTY_LIVE = ("Junk",)


def old_mailbox(seed):
    g = mg.Generator(100 + seed)
    folders = []
    for k, name in enumerate(FOLDERS):
        f = mg.Folder(name, UV_BASE + 10 * seed + k)
        for i in range(SIZES[name]):
            t = 1500000000 + seed * 86400 + i * 3600 + k * 60
            f.msgs.append(mg.Msg(g.message(t), g.flags(name), t))
        folders.append(f)
    return g, folders


def years_of_mail(maildir):
    """Moves each folder's UIDs up by FIRST_UID, as on a server that has
    given out that many UIDs before (what `doveadm mailbox update
    --min-next-uid` does to a folder before its mail arrives)."""
    for name, first in FIRST_UID.items():
        d = maildir if name == "INBOX" else os.path.join(maildir, "." + name)
        path = os.path.join(d, "dovecot-uidlist")
        with open(path) as f:
            head, *lines = f.readlines()
        head = re.sub(r" N(\d+)", lambda m: " N%d" % (int(m.group(1)) + first), head)
        lines = ["%d %s" % (int(ln.split(" ", 1)[0]) + first, ln.split(" ", 1)[1])
                 for ln in lines]
        with open(path, "w") as f:
            f.writelines([head] + lines)


def expunged(seed, name, n):
    """Indexes of the messages the user deleted over the years: the first
    of each folder and about a third of the others, irregularly."""
    return [i for i in range(n) if i == 0 or (i * 7 + seed + len(name)) % 3 == 0]


class User:
    """One user's story: clients, recordings, the figures after."""

    def __init__(self, name, mode, seed):
        self.name, self.mode, self.seed = name, mode, seed
        self.ways = WAYS[mode]


class ImapClients(bftest.SiteCase):
    SITE = dict(extra_conf="recipient_delimiter = +\nlmtp_save_to_detail_mailbox = yes\n")
    # the (backfill_imap_uids, folder) pairs the client tests check; None:
    # all
    CHECK = None
    USERS = USERS
    # the phone opens folders with EXAMINE (K-9 Mail, Thunderbird for
    # Android) instead of SELECT (test_imap_clients_examine.py)
    PHONE_EXAMINE = False

    @classmethod
    def build(cls, site):
        assert mbsync.available(), "mbsync (isync) is not installed: run scripts/install-deps"
        cls.users = {n: User(n, m, s) for n, (m, s) in cls.USERS.items()}
        cls.old_era(site)
        cls.incident(site)
        site.enable_plugin()
        cls.plan = cls.doveadm_rows(site, "plan")
        import bfdoveadm as bd
        for u in cls.users.values():
            how = MERGE_BY.get(u.name, "imap")
            if how == "doveadm":
                rows = bd.doveadm_json(site.dc, "backfill", "run", "-u", u.name)[0]
                assert rows[0]["result"] == "done", rows
            else:
                site.wait_merged(u.name, service=how)
        cls.after(site)

    # ------------------------------------------------------------ old server
    @classmethod
    def old_era(cls, site):
        old = dv.Dovecot(name="old", auto_mailboxes="no",
                         workdir=os.path.join(site.base, "old-server"),
                         extra_conf="pop3_no_flag_updates = yes\n")
        try:
            for u in cls.users.values():
                u.arch_home = os.path.join(site.archive_root, u.name)
                u.gen, folders = old_mailbox(u.seed)
                mg.write_maildir(os.path.join(u.arch_home, "Maildir"), folders)
                years_of_mail(os.path.join(u.arch_home, "Maildir"))
                dv.chown_tree(u.arch_home)
                old.add_user(u.name, home=u.arch_home)
            old.start()
            for u in cls.users.values():
                c = old.imap(u.name)
                try:
                    for name in FOLDERS:
                        c.select(dv._imap_quote(name))
                        gone = expunged(u.seed, name, SIZES[name])
                        c.store(",".join(str(i + 1) for i in gone), "+FLAGS.SILENT", "(\\Deleted)")
                        c.expunge()
                        c.close()
                finally:
                    c.logout()
                port = old.ports["imap"]
                u.old_snapshot = old.snapshot(u.name)
                u.old_uidls = old.pop3_uidls(u.name)
                u.laptop = mbsync.Mbsync(os.path.join(site.base, "clients", u.name, "laptop"),
                                         u.name, dv.PASSWORD, port)
                u.tb = imapcache.CacheClient("thunderbird", "127.0.0.1", port, u.name, dv.PASSWORD)
                u.phone = imapcache.CacheClient("phone", "127.0.0.1", port, u.name, dv.PASSWORD,
                                                examine=cls.PHONE_EXAMINE)
                u.before = {"laptop": u.laptop.sync(), "thunderbird": u.tb.sync(),
                            "phone": u.phone.sync()}
            old.assert_log_clean()
        finally:
            old.stop()
            old.cleanup()
        for u in cls.users.values():
            mg.freeze(u.arch_home)

    # ------------------------------------------------------------ new server
    @classmethod
    def incident(cls, site):
        for u in cls.users.values():
            u.live_home = os.path.join(site.base, "live", u.name)
            os.makedirs(u.live_home, exist_ok=True)
            dv.chown_tree(u.live_home)
            site.dc.add_user(u.name, home=u.live_home,
                             extra="userdb_backfill_imap_uids=%s" % u.mode)
        site.start(plugin_on=False)
        port = site.dc.ports["imap"]
        for u in cls.users.values():
            t = 1700000000 + u.seed * 3600
            u.live_mail = {"INBOX": [], "Sent": []}
            for i in range(LIVE_EARLY):
                raw = u.gen.message(t + i * 60, kind="plain")
                site.dc.lmtp_deliver(u.name, raw)
                u.live_mail["INBOX"].append(raw)
            for i in range(LIVE_SENT):
                raw = u.gen.message(t + 600 + i * 60, kind="plain")
                site.dc.lmtp_deliver("%s+Sent" % u.name, raw)
                u.live_mail["Sent"].append(raw)
            for c in (u.laptop, u.tb, u.phone):
                c.port = port
            u.incident_phone = u.phone.sync(list(PHONE_OPENED))
            # the user reads one mail on the phone and flags another (a
            # K-9 user who only glanced at the list changes nothing)
            if not cls.PHONE_EXAMINE:
                uids = sorted(u.phone.folders["INBOX"].msgs)
                u.phone.store_flags("INBOX", uids[0], ["\\Seen"])
                u.phone.store_flags("INBOX", uids[1], ["\\Flagged", "$Label2"])
            u.phone_live_meta = u.phone.cached_meta("INBOX")
            for i in range(LIVE_LATE):
                raw = u.gen.message(t + 1200 + i * 60, kind="plain")
                site.dc.lmtp_deliver(u.name, raw)
                u.live_mail["INBOX"].append(raw)
            u.new_era_uidls = site.dc.pop3_uidls(u.name)

    # ------------------------------------------------------------ after
    @classmethod
    def after(cls, site):
        cls.status = cls.doveadm_rows(site, "status")
        cls.verify = cls.doveadm_rows(site, "verify")
        for u in cls.users.values():
            u.lap_after = u.laptop.sync()
            u.tb_after = u.tb.sync()
            u.phone_after = u.phone.sync()
            # what a user must do about a folder mbsync refused
            for f in u.lap_after.refused:
                u.laptop.reset_state(f)
            u.lap_reset = u.laptop.sync() if u.lap_after.refused else None
            u.post_uidls = site.dc.pop3_uidls(u.name)
            cls.report(u)
        # a day later: one new mail in INBOX and one filed into the folder
        # the merge created; every client gets exactly those
        for u in cls.users.values():
            t = 1700100000 + u.seed * 3600
            u.later = {"INBOX": u.gen.message(t, kind="plain"),
                       "Projects.Work": u.gen.message(t + 60, kind="plain")}
            site.dc.lmtp_deliver(u.name, u.later["INBOX"])
            site.dc.lmtp_deliver("%s+Projects.Work" % u.name, u.later["Projects.Work"])
            u.later_syncs = {"laptop": u.laptop.sync(), "thunderbird": u.tb.sync(),
                             "phone": u.phone.sync()}

    @classmethod
    def doveadm_rows(cls, site, cmd):
        """{user: row} of doveadm backfill CMD -A (json), or the error."""
        try:
            import bfdoveadm as bd
            rows, _ = bd.doveadm_json(site.dc, "backfill", cmd, "-A", ok=(0, 1))
            return bd.by_user(rows)
        except (AssertionError, unittest.SkipTest, ValueError) as e:
            return e

    @staticmethod
    def report(u):
        lines = ["%s (backfill_imap_uids=%s):" % (u.name, u.mode)]
        for f in FOLDERS:
            lines.append("  %-14s A=%-3d laptop pulled %s%s, thunderbird %d%s, phone %d%s" % (
                f, len(u.old_snapshot[f][1]), u.lap_after.pulled.get(f),
                " REFUSED (after reset: %s)" % u.lap_reset.pulled.get(f)
                if f in u.lap_after.refused else "",
                u.tb_after[f].downloaded, " (cache dropped)" if u.tb_after[f].invalidated else "",
                u.phone_after[f].downloaded, " (cache dropped)" if u.phone_after[f].invalidated else ""))
        print("\n".join(lines), file=sys.stderr)

    # ------------------------------------------------------------ expected
    def counts(self, u, f):
        a = len(u.old_snapshot[f][1])
        ln = len(u.live_mail.get(f, ()))
        p = LIVE_EARLY if f == "INBOX" else 0
        return a, ln, p

    def expect_old_client(self, u, f):
        """(downloads, refused) of a client that cached f from the old server."""
        a, ln, _ = self.counts(u, f)
        if u.ways[f] == "live":
            return a + ln, True
        return ln, False

    def expect_phone(self, u, f):
        a, ln, p = self.counts(u, f)
        if f in PHONE_OPENED:
            return a + ln - p if u.ways[f] == "live" else a + ln
        return a + ln if u.ways[f] == "live" else ln

    # ------------------------------------------------------------ tests
    def test_00_story_is_real(self):
        for u in self.users.values():
            for f in FOLDERS:
                uv, msgs = u.old_snapshot[f]
                uids = [m.uid for m in msgs]
                self.assertGreater(uids[0], FIRST_UID[f] + 1,
                                   "%s %s: no gap at the start" % (u.name, f))
                self.assertNotEqual(uids, list(range(uids[0], uids[0] + len(uids))),
                                    "%s %s: no UID gaps" % (u.name, f))
                self.assertGreaterEqual(uv, UV_BASE)
                self.assertEqual(u.before["laptop"].pulled[f], len(msgs))
                self.assertEqual(u.before["thunderbird"][f].downloaded, len(msgs))
            self.assertEqual(u.before["laptop"].refused, {})
            ph = u.incident_phone["INBOX"]
            self.assertIsNotNone(ph.invalidated, "the new server's INBOX kept the old UIDVALIDITY")
            self.assertEqual(ph.downloaded, LIVE_EARLY)
            self.assertEqual(len(u.new_era_uidls), LIVE_EARLY + LIVE_LATE)

    def check_users(self, check):
        errors = []
        for u in self.users.values():
            for f in FOLDERS:
                if self.CHECK is not None and (u.mode, f) not in self.CHECK:
                    continue
                msg = check(u, f)
                if msg:
                    errors.append("%s (%s) %s: %s" % (u.name, u.mode, f, msg))
        self.assertEqual(errors, [], "\n" + "\n".join(errors))

    def test_uidvalidity_and_uids_as_promised(self):
        """Folders going archive/renumber show the old server's
        UIDVALIDITY and its UIDs for the same messages (Thunderbird's
        cache after the sync holds what the server shows)."""
        def check(u, f):
            uv, cached = u.tb.cached(f)
            old_uv, old_msgs = u.old_snapshot[f]
            old = {m.uid: m.fingerprint for m in old_msgs}
            if u.ways[f] == "live":
                return None if uv != old_uv else "kept the old UIDVALIDITY %d" % uv
            if uv != old_uv:
                return "UIDVALIDITY %d, expected the old server's %d" % (uv, old_uv)
            moved = {k: v for k, v in old.items() if cached.get(k) != v}
            if moved:
                return "%d old UIDs show other messages (e.g. %s)" % (
                    len(moved), sorted(moved)[:5])
            live_uids = sorted(k for k in cached if k not in old)
            if live_uids and min(live_uids) <= max(old):
                return "live mail at UID %d, not above the old UIDs" % min(live_uids)
            return None
        self.check_users(check)

    def test_laptop_mbsync(self):
        """mbsync pulls only mail new to it and refuses exactly the folders
        whose UIDVALIDITY it was shown changed (the live way)."""
        def check(u, f):
            want, refused = self.expect_old_client(u, f)
            r = u.lap_after
            if refused:
                if f not in r.refused:
                    return "not refused: pulled %s" % r.pulled.get(f)
                if "UIDVALIDITY" not in r.refused[f]:
                    return "refused for another reason: %s" % r.refused[f]
                got = u.lap_reset.pulled.get(f)
                if got != want:
                    return "after the state reset pulled %s, expected %d" % (got, want)
                return None
            if f in r.refused:
                return "refused (%s); pulled %s after a state reset" % (
                    r.refused[f], u.lap_reset.pulled.get(f))
            if r.pulled.get(f) != want:
                return "pulled %s, expected %d" % (r.pulled.get(f), want)
            return None
        self.check_users(check)

    def test_laptop_mbsync_nothing_twice(self):
        """No message the laptop had is pulled again, except in folders
        that went the live way; empty live folders pull nothing."""
        def check(u, f):
            if u.ways[f] == "live":
                return None
            old = {m.fingerprint for m in u.old_snapshot[f][1]}
            again = [fp for fp in u.lap_after.new_fingerprints.get(f, []) if fp in old]
            return "%d messages pulled again" % len(again) if again else None
        self.check_users(check)
        for u in self.users.values():
            for f in EMPTY_LIVE:
                self.assertEqual(u.lap_after.pulled.get(f), 0, (u.name, f))
                self.assertNotIn(f, u.lap_after.refused)

    def test_thunderbird(self):
        def check(u, f):
            want, dropped = self.expect_old_client(u, f)
            r = u.tb_after[f]
            if bool(r.invalidated) != dropped:
                return "cache %s (UIDVALIDITY %d)" % (
                    "dropped" if r.invalidated else "kept", r.uidvalidity)
            if r.downloaded != want:
                return "downloaded %d, expected %d (%d it had)" % (
                    r.downloaded, want, len(r.redownloaded()))
            if not dropped and r.redownloaded():
                return "downloaded %d it had" % len(r.redownloaded())
            return None
        self.check_users(check)

    def test_phone(self):
        """The phone downloads only the restored mail of the folders it
        opened during the incident (and mail new to it)."""
        def check(u, f):
            want = self.expect_phone(u, f)
            r = u.phone_after[f]
            if r.downloaded != want:
                return "downloaded %d, expected %d (%d it had, cache %s)" % (
                    r.downloaded, want, len(r.redownloaded()),
                    "dropped" if r.invalidated else "kept")
            return None
        self.check_users(check)

    def test_next_day_only_new_mail(self):
        """After the merge the folders are stable: the next sync of every
        client downloads the one new mail of INBOX and of Projects.Work,
        nothing else, and a mail delivered into a folder the merge made
        gets a UID above the old server's."""
        want = {"INBOX": 1, "Projects.Work": 1, "Sent": 0, "Trash": 0, "Drafts": 0}
        def check(u, f):
            errs = []
            for name, r in sorted(u.later_syncs.items()):
                if name == "laptop":
                    got = r.pulled.get(f)
                    if f in r.refused:
                        errs.append("laptop refused it: %s" % r.refused[f])
                else:
                    got = r[f].downloaded
                if got != want[f]:
                    errs.append("%s downloaded %s, expected %d" % (name, got, want[f]))
            if want[f] and u.ways[f] in ("archive", "renumber"):
                uid = max(u.tb.folders[f].msgs)
                old_max = max(m.uid for m in u.old_snapshot[f][1])
                if uid <= old_max:
                    errs.append("new mail at UID %d, old server's UIDs up to %d" % (uid, old_max))
            return "; ".join(errs) or None
        self.check_users(check)

    def test_live_mail_keeps_flags_and_dates(self):
        """The live INBOX mail the phone had (and flagged) shows the same
        flags, keywords and INTERNALDATE after the merge, renumbered or
        not."""
        for u in self.users.values():
            after = u.phone.cached_meta("INBOX")
            for fp, meta in u.phone_live_meta.items():
                self.assertEqual(after.get(fp), meta, "%s: live message %s" % (u.name, fp[:12]))
            flagged = [m for ms in u.phone_live_meta.values() for m in ms
                       if "$Label2" in m[0]]
            self.assertEqual(len(flagged), 0 if self.PHONE_EXAMINE else 1, u.name)

    def test_pop3_old_era(self):
        for u in self.users.values():
            known = dict(u.old_uidls)
            had = set(known.values())
            new = [(uidl, fp) for uidl, fp in u.post_uidls if uidl not in known]
            again = [x for x in new if x[1] in had]
            self.assertEqual(again, [], "%s: old-era POP3 client downloads again" % u.name)
            live_fps = sorted(mg.Msg(r).fingerprint for r in u.live_mail["INBOX"])
            self.assertEqual(sorted(fp for _, fp in new), live_fps, u.name)
            # what it had is still shown with the same UIDL (or hidden)
            post = dict(u.post_uidls)
            for uidl, fp in u.old_uidls:
                if uidl in post:
                    self.assertEqual(post[uidl], fp, "%s: UIDL %s shows another message" % (u.name, uidl))

    def test_pop3_new_era(self):
        for u in self.users.values():
            post = dict(u.post_uidls)
            for uidl, fp in u.new_era_uidls:
                self.assertEqual(post.get(uidl), fp, "%s: live message lost its UIDL %s" % (u.name, uidl))
            known = {fp for _, fp in u.new_era_uidls}
            new = [fp for uidl, fp in u.post_uidls if uidl not in dict(u.new_era_uidls)]
            self.assertEqual([fp for fp in new if fp in known], [], u.name)
            unseen = [m for m in u.old_snapshot["INBOX"][1] if "\\Seen" not in m.flags]
            self.assertEqual(len(new), len(unseen), "%s: restored mail offered" % u.name)
            uidls = [x for x, _ in u.post_uidls]
            self.assertEqual(len(uidls), len(set(uidls)), "%s: duplicate UIDLs" % u.name)

    # ------------------------------------------------------------ doveadm
    def uid_ways(self, rows, u):
        """{archive folder: way} of the user's uid_ways column."""
        self.assertIsInstance(rows, dict, "doveadm failed: %s" % rows)
        row = rows[u.name]
        self.assertIn("uid_ways", row, "no uid_ways column: %s" % sorted(row))
        return dict(item.split("=", 1) for item in row["uid_ways"].split(",") if item)

    def check_ways(self, rows):
        def check(u, f):
            row = rows[u.name]
            got = self.uid_ways(rows, u).get(f)
            if got == u.ways[f]:
                return None
            return "way %s, expected %s (reasons: %s)" % (
                got, u.ways[f], row.get("uid_way_reasons", "-"))
        self.check_users(check)

    def test_plan_uid_ways(self):
        self.check_ways(self.plan)

    def test_status_uid_ways(self):
        self.check_ways(self.status)

    def test_verify(self):
        self.assertIsInstance(self.verify, dict, "doveadm failed: %s" % self.verify)
        for u in self.users.values():
            self.assertEqual(self.verify[u.name]["result"], "ok", self.verify[u.name])


if __name__ == "__main__":
    unittest.main(verbosity=2)
