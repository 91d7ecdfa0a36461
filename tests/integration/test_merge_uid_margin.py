"""Review s7 F1 and F7: UIDs after the archive's UIDNEXT (docs/imap-caches.md,
backfill_imap_uid_margin).

The archive is a backup taken before the crash.  The old server went on
delivering after it, giving out UIDs from the backup's UIDNEXT on under the
same UIDVALIDITY, and its clients cached that mail, which the crash lost.
Nothing the merge or later mail puts into a folder that keeps the archive's
UIDVALIDITY may take such a UID: everything new starts at the archive's
UIDNEXT plus backfill_imap_uid_margin (default 100000).

- lap (renumber way): the old server got 2 INBOX messages after the backup
  (904, 905) and a laptop synced them; after the merge the live messages
  sit at 100904.., the laptop shows every live message and no UID it cached
  shows another message; the next delivery gets 100907; verify is ok;
- pop (renumber INBOX, archive-way Sent): mail delivered after the merge
  shows no POP3 UIDL (%08Xu%08Xv) the old server gave lost mail, and an
  APPEND to Sent gets 100904, not the laptop's 904;
- small (userdb_backfill_imap_uid_margin=1000): the same at 1904;
- space (archive UIDNEXT 2147483000, the default margin does not fit below
  2^31): plan and status say live, uid-space, and the folder keeps its
  live UIDVALIDITY;
- oldrec: a move recorded before the margin existed (cut at
  renumber-intent with margin 0) resumes at its recorded base (904) and the
  folder's UIDNEXT still gets the margin;
- gone (F7, margin 0): a folder the merge created (archive way), the user
  deleted, and a late restored file made the merge create again, gets a
  fresh UIDVALIDITY: the laptop that cached the deleted folder finds no UID
  it holds showing another message.
"""
import os
import re
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import dv, mg  # noqa: E402
import imapcache  # noqa: E402
import fingerprint_ref  # noqa: E402

A, AS = 1300000201, 1300000202
LIVE_UV = 1700000001
MARGIN = 100000
ARCH_NEXT = 904  # UIDs 301, 602, 903
CONF = bftest.CRASH_CONF


def scenario(seed, folders=(("INBOX", A),)):
    g = mg.Generator(seed)
    s = mg.Scenario()
    for name, uv in folders:
        f = mg.Folder(name, uv)
        for i in range(3):
            t = 1500000000 + i * 3600
            f.msgs.append(mg.Msg(g.message(t, kind="plain"), {"\\Seen"}, t))
        s.archive.append(f)
    s.archive_uid_gap = 300
    s.live = [mg.Folder("INBOX", LIVE_UV)]
    return g, s


def old_server(site, user):
    """The old server of user: the backup as it was, as user "old" + user."""
    home = os.path.join(site.base, "oldsrv", user)
    shutil.copytree(os.path.join(site.base, "archive", user), home, symlinks=True)
    for root, _, files in os.walk(home):
        os.chmod(root, 0o700)
        for n in files:
            os.chmod(os.path.join(root, n), 0o600)
    dv.chown_tree(home)
    site.dc.add_user("old" + user, home=home)


def ways(dc, user, cmd="status"):
    rows, r = bd.doveadm_json(dc, "backfill", cmd, "-u", user)
    return rows[0]["uid_ways"], rows[0]["uid_way_reasons"]


def fp(raw):
    return fingerprint_ref.fingerprint(raw)[0]


def laptop(dc, user):
    return imapcache.CacheClient("laptop-" + user, "127.0.0.1", dc.ports["imap"],
                                 "old" + user, dv.PASSWORD)


def late_file(site, user, folder, raw, uid):
    """A staged restore adds a file to the archive's folder at uid."""
    fdir = os.path.join(site.base, "archive", user, "Maildir", "." + folder)
    name = "1500500000.M1P1.old-mx,S=%d,W=%d" % (len(raw), len(raw.replace(b"\n", b"\r\n")))
    with open(os.path.join(fdir, "cur", name + ":2,"), "wb") as fh:
        fh.write(raw)
    ul = os.path.join(fdir, "dovecot-uidlist")
    with open(ul) as fh:
        lines = fh.read().splitlines(True)
    lines.insert(len(lines), "%d :%s\n" % (uid, name))
    with open(ul, "w") as fh:
        fh.write("".join(lines))
    for n in os.listdir(fdir):
        if n.startswith("dovecot.index"):
            os.unlink(os.path.join(fdir, n))


class Margin(bftest.SiteCase):
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.g = {}
        for user, seed, folders, extra in (
                ("lap", 7, (("INBOX", A),), ""),
                ("pop", 9, (("INBOX", A), ("Sent", AS)), ""),
                ("small", 11, (("INBOX", A), ("Sent", AS)),
                 "userdb_backfill_imap_uid_margin=1000"),
                ("space", 13, (("INBOX", A), ("Sent", AS)), ""),
                ("oldrec", 15, (("INBOX", A),), "userdb_backfill_imap_uid_margin=0"),
                # (no margin: F7 alone)
                ("gone", 20, (("INBOX", A), ("Work", AS)),
                 "userdb_backfill_imap_uid_margin=0")):
            g, s = scenario(seed, folders)
            cls.g[user] = g
            site.add_user(user, s, record=False, extra=extra)
        # space: its archive INBOX and Sent end near 2^31
        for folder in ("INBOX", "Sent"):
            path = os.path.join(site.base, "archive", "space", "Maildir",
                                "." + folder if folder != "INBOX" else "",
                                "dovecot-uidlist")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(re.sub(r" N\d+", " N2147483000", text, count=1))
        for user in ("lap", "pop"):
            old_server(site, user)
        site.dc.auto_mailboxes = "no"
        site.start(plugin_on=False)
        dc = site.dc
        g = cls.g
        # the old servers after the backup; the laptops' last syncs
        for i in range(2):
            dc.lmtp_deliver("oldlap", g["lap"].message(1600000000 + i, kind="plain"))
        for i in range(5):
            dc.lmtp_deliver("oldpop", g["pop"].message(1600000000 + i, kind="plain"))
        for i in range(2):
            dc.append("oldpop", "Sent", g["pop"].message(1600001000 + i, kind="plain"),
                      flags=("\\Seen",))
        cls.old_uidls = set(dc.pop3_uidl_list("oldpop"))
        cls.lap = {u: laptop(dc, u) for u in ("lap", "pop")}
        cls.old_cache = {}
        for u, lap in cls.lap.items():
            r = lap.sync(["INBOX", "Sent"] if u == "pop" else ["INBOX"])
            cls.old_cache[u] = {f: sorted(lap.cached(f)[1]) for f in r}
            lap.user = u
        # the incident: live mail by LMTP, no IMAP client
        cls.live = {}
        for user in ("lap", "pop", "small", "space", "oldrec"):
            cls.live[user] = [g[user].message(1700000000 + i, kind="plain") for i in range(3)]
            for raw in cls.live[user]:
                dc.lmtp_deliver(user, raw)
        site.enable_plugin()
        cls.plan_space = ways(dc, "space", "plan")
        cls.runs = {}
        for user in ("lap", "pop", "small", "space", "gone"):
            cls.runs[user] = bd.doveadm(dc, "backfill", "run", "-u", user, fmt="json")
        # oldrec: a move on record from before the margin (base 904)
        env = dict(os.environ, BACKFILL_TEST_CRASH="renumber-intent")
        cls.oldrec_cut = bd.doveadm(dc, "backfill", "run", "-u", "oldrec", fmt="json",
                                    env=env).returncode
        bftest.remove_locks(dc, "oldrec")
        dc.set_user("oldrec")
        # (through dc.doveadm, which waits until auth sees the new file)
        assert "backfill_imap_uid_margin" not in dc.doveadm("user", "oldrec").stdout.decode()
        cls.runs["oldrec"] = bd.doveadm(dc, "backfill", "run", "-u", "oldrec", fmt="json")

    def test_runs_ok(self):
        for user, r in self.runs.items():
            self.assertEqual(r.returncode, 0, "%s: %s" % (user, r.stderr))

    def test_renumbered_live_mail_above_the_margin(self):
        dc = self.site.dc
        self.assertEqual(ways(dc, "lap"), ("INBOX=renumber", "INBOX=no-imap-client"))
        uv, msgs = dc.mailbox("lap", "INBOX")
        base = ARCH_NEXT + MARGIN
        self.assertEqual((uv, [m.uid for m in msgs]),
                         (A, [301, 602, 903, base, base + 1, base + 2]))
        self.assertEqual([m.fingerprint for m in msgs[3:]], [fp(r) for r in self.live["lap"]])
        # the laptop of the old server, now on the new one
        self.assertEqual(self.old_cache["lap"]["INBOX"], [301, 602, 903, 904, 905])
        r = self.lap["lap"].sync(["INBOX"])["INBOX"]
        self.assertIsNone(r.invalidated)
        _, cached = self.lap["lap"].cached("INBOX")
        for m in msgs:
            self.assertEqual(cached.get(m.uid), m.fingerprint, m.uid)
        # the next delivery goes above
        raw = self.g["lap"].message(1800000000, kind="plain")
        dc.lmtp_deliver("lap", raw)
        _, msgs = dc.mailbox("lap", "INBOX")
        self.assertEqual((msgs[-1].uid, msgs[-1].fingerprint), (base + 3, fp(raw)))
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", "lap")
        self.assertEqual(rows[0]["result"], "ok", r.stdout + r.stderr)

    def test_pop3_and_archive_way_after_the_merge(self):
        dc = self.site.dc
        self.assertEqual(ways(dc, "pop"), ("INBOX=renumber,Sent=archive",
                                           "INBOX=no-imap-client,Sent=created"))
        new = [self.g["pop"].message(1800000000 + i, kind="plain") for i in range(2)]
        for raw in new:
            dc.lmtp_deliver("pop", raw)
        new_fps = {fp(r) for r in new}
        shown = [(u, f) for u, f in dc.pop3_uidls("pop") if f in new_fps]
        self.assertEqual(len(shown), 2)
        for uidl, _ in shown:
            self.assertNotIn(uidl, self.old_uidls)
            self.assertEqual(uidl, "%08x%08x" % (int(uidl[:8], 16), A))
            self.assertGreaterEqual(int(uidl[:8], 16), ARCH_NEXT + MARGIN + 3)
        sent = self.g["pop"].message(1800001000, kind="plain")
        dc.append("pop", "Sent", sent, flags=("\\Seen",))
        uv, msgs = dc.mailbox("pop", "Sent")
        self.assertEqual((uv, [m.uid for m in msgs]), (AS, [301, 602, 903, ARCH_NEXT + MARGIN]))
        self.assertEqual(self.old_cache["pop"]["Sent"], [301, 602, 903, 904, 905])
        r = self.lap["pop"].sync(["Sent"])["Sent"]
        self.assertIsNone(r.invalidated)
        _, cached = self.lap["pop"].cached("Sent")
        for m in msgs:
            self.assertEqual(cached.get(m.uid), m.fingerprint, m.uid)

    def test_margin_per_user(self):
        dc = self.site.dc
        base = ARCH_NEXT + 1000
        uv, msgs = dc.mailbox("small", "INBOX")
        self.assertEqual((uv, [m.uid for m in msgs]),
                         (A, [301, 602, 903, base, base + 1, base + 2]))
        dc.append("small", "Sent", self.g["small"].message(1800000000, kind="plain"))
        uv, msgs = dc.mailbox("small", "Sent")
        self.assertEqual((uv, [m.uid for m in msgs]), (AS, [301, 602, 903, base]))

    def test_no_room_for_the_margin_goes_live(self):
        dc = self.site.dc
        want = ("INBOX=live,Sent=live", "INBOX=uid-space,Sent=uid-space")
        self.assertEqual(self.plan_space, want)
        self.assertEqual(ways(dc, "space"), want)
        uv, msgs = dc.mailbox("space", "INBOX")
        self.assertEqual(uv, LIVE_UV)
        self.assertEqual([m.uid for m in msgs[:3]], [1, 2, 3])
        self.assertNotEqual(dc.mailbox("space", "Sent")[0], AS)
        self.assertIn("backfill_imap_uid_margin=100000 leave no room below 2147483648",
                      self.runs["space"].stderr + dc.log_tail())

    def test_old_move_record_resumes_at_its_base(self):
        dc = self.site.dc
        self.assertEqual(self.oldrec_cut, -9)
        uv, msgs = dc.mailbox("oldrec", "INBOX")
        self.assertEqual((uv, [m.uid for m in msgs]),
                         (A, [301, 602, 903, 904, 905, 906]))
        self.assertEqual([m.fingerprint for m in msgs[3:]], [fp(r) for r in self.live["oldrec"]])
        raw = self.g["oldrec"].message(1800000000, kind="plain")
        dc.lmtp_deliver("oldrec", raw)
        _, msgs = dc.mailbox("oldrec", "INBOX")
        self.assertEqual((msgs[-1].uid, msgs[-1].fingerprint), (ARCH_NEXT + MARGIN, fp(raw)))

    def test_folder_made_again_gets_a_fresh_uidvalidity(self):
        """F7."""
        dc = self.site.dc
        g = self.g["gone"]
        self.assertEqual(ways(dc, "gone"), ("INBOX=live,Work=archive",
                                            "INBOX=live-folder-opened,Work=created"))
        dc.append("gone", "Work", g.message(1800000000, kind="plain"))
        lap = imapcache.CacheClient("laptop-gone", "127.0.0.1", dc.ports["imap"], "gone",
                                    dv.PASSWORD)
        lap.sync(["Work"])
        uv, cached = lap.cached("Work")
        self.assertEqual((uv, sorted(cached)), (AS, [301, 602, 903, ARCH_NEXT]))
        c = dc.imap("gone")
        try:
            self.assertEqual(c.delete("Work")[0], "OK")
        finally:
            c.logout()
        late_file(self.site, "gone", "Work", g.message(1500500000, kind="plain"), 800)
        r = bd.doveadm(dc, "backfill", "run", "-u", "gone", fmt="json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ways(dc, "gone"), ("INBOX=live,Work=live",
                                            "INBOX=live-folder-opened,Work=uid-taken"))
        uv, msgs = dc.mailbox("gone", "Work")
        self.assertNotEqual(uv, AS)
        self.assertEqual(len(msgs), 1)
        r = lap.sync(["Work"])["Work"]
        self.assertEqual(r.invalidated, AS)
        _, cached = lap.cached("Work")
        self.assertEqual(cached, {m.uid: m.fingerprint for m in msgs})


if __name__ == "__main__":
    unittest.main(verbosity=2)
