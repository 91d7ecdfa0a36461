"""Issue 19's archive way against damaged or hostile archives and races
(review findings on part 1).

- HugeUids: an archive dovecot-uidlist with a UID near 2^32 (4294967294),
  or a UIDNEXT there (4294967295), made Dovecot panic when the merge asked
  for that UID (mail_index_append_finish_uids_full), in every session of
  the user, and `doveadm backfill run -A` died at that user.  Now such a
  folder goes the live way (reason uid-range, logged with the folder and
  the UID), every user is merged, and mail appended to the folder later
  gets a UID without a panic, also where pop3_uidl_format has no %v and
  the live UIDNEXT is raised past the archive's UIDs.
- InboxGivenUp: under backfill_imap_uids = archive an empty live INBOX
  takes the archive way; a delivery while the merge fills it gives the
  way up and the INBOX a fresh UIDVALIDITY.  Its copies were saved
  without a stored POP3 UIDL (%08Xu%08Xv gave the old one by itself), so
  all 600 old UIDLs changed: every POP3 client of the old server would
  download the INBOX again, and verify said ok.  Now INBOX copies keep a
  stored UIDL, and verify checks that every merged copy in the INBOX
  shows the old server's UIDL (with the INBOX fix undone, it fails with
  "INBOX: 600 merged messages no longer show the POP3 UIDL ...").
- VerifyTampered: verify checks that a folder that took the archive's
  UIDs has at least the archive's UIDNEXT plus backfill_imap_uid_margin
  (the old server's clients fetch from the archive's on, and the old
  server gave out the margin's UIDs after the backup), and fails where the journal's copies are in another
  live folder than the one that took the UIDs, instead of checking
  nothing: a folder deleted and made again with its GUID, UIDVALIDITY
  and messages at their UIDs (UIDNEXT 4, not 9), and journal entries
  pointing elsewhere.
"""
import os
import re
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402
import statedb  # noqa: E402

TOP = 4294967294  # the highest UID Dovecot's assertion would still pass


def uidlist_path(site, user, folder):
    return os.path.join(site.base, "archive", user, "Maildir", "." + folder,
                        "dovecot-uidlist")


def forge_uidlist(site, user, folder, last_uid=None, uidnext=None):
    """Rewrite an archive folder's dovecot-uidlist as a damaged or forged
    one: its last message at last_uid, its header's next UID uidnext."""
    path = uidlist_path(site, user, folder)
    with open(path) as f:
        lines = f.read().splitlines()
    if last_uid is not None:
        _, rest = lines[-1].split(" ", 1)
        lines[-1] = "%d %s" % (last_uid, rest)
        if uidnext is None:
            uidnext = last_uid + 1
    lines[0] = re.sub(r" N\d+", " N%d" % uidnext, lines[0])
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def hostile_scenario(seed):
    g = mg.Generator(seed)
    s = mg.Scenario()
    s.archive.append(mg.Folder("INBOX", 1300000010))
    f = mg.Folder("Old", 1300000011)
    for i in range(3):
        t = 1500000000 + i * 60
        f.msgs.append(mg.Msg(g.message(t), set(), t))
    s.archive.append(f)
    s.live = [mg.Folder("INBOX", 1700000001)]
    return s


class HugeUids(bftest.SiteCase):
    """amy: Old's last UID is 4294967294; bob: a sane archive; cal: Old's
    UIDs are 1-3 but its UIDNEXT is 4294967295.  `doveadm backfill run
    -A` merges the three."""

    USERS = ("amy", "bob", "cal")

    @classmethod
    def build(cls, site):
        for i, user in enumerate(cls.USERS):
            site.add_user(user, hostile_scenario(40 + i), record=False)
        forge_uidlist(site, "amy", "Old", last_uid=TOP)
        forge_uidlist(site, "cal", "Old", uidnext=TOP + 1)
        site.start(plugin_on=False)
        cls.plan, _ = bd.doveadm_json(site.dc, "backfill", "plan", "-u", "amy")
        cls.ran = bd.doveadm(site.dc, "backfill", "run", "-A", fmt="json")
        cls.rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-A")

    def test_no_panic_and_every_user_merged(self):
        self.assertEqual(self.site.dc.log_lines("Panic"), [])
        self.assertNotIn("Panic", self.ran.stderr)
        self.assertEqual(self.ran.returncode, 0, self.ran.stderr[-2000:])
        states = {r["username"]: r["state"] for r in self.rows}
        self.assertEqual(states, {u: "done" for u in self.USERS})

    def test_out_of_range_folder_goes_live_saying_why(self):
        rows = bd.by_user(self.rows)
        for user in ("amy", "cal"):
            self.assertEqual(rows[user]["uid_ways"], "INBOX=live,Old=live")
            self.assertEqual(rows[user]["uid_way_reasons"],
                             "INBOX=live-folder-opened,Old=uid-range")
        self.assertEqual(rows["bob"]["uid_way_reasons"],
                         "INBOX=live-folder-opened,Old=created")
        self.assertEqual(self.plan[0]["uid_way_reasons"],
                         "INBOX=live-folder-opened,Old=uid-range")
        self.assertIn("backfill: Old: archive UID %d is not below 2147483648" % TOP,
                      self.ran.stderr)
        self.assertIn("backfill: Old: archive UIDNEXT %d is not below 2147483648"
                      % (TOP + 1), self.ran.stderr)

    def test_every_message_merged_and_later_mail_gets_a_uid(self):
        dc = self.site.dc
        g = mg.Generator(77)
        for user in self.USERS:
            uv, msgs = dc.mailbox(user, "Old")
            self.assertEqual(len(msgs), 3, user)
            dc.append(user, "Old", g.message(1710000000))
            uv2, msgs2 = dc.mailbox(user, "Old")
            self.assertEqual(uv2, uv, user)
            self.assertEqual(len(msgs2), 4, user)
            self.assertLess(msgs2[-1].uid, 2 ** 31, user)
        self.assertEqual(dc.log_lines("Panic"), [])


class HugeUidsUidOnlyFormat(bftest.SiteCase):
    """pop3_uidl_format without %v: the merge raises the live UIDNEXT past
    the archive's UIDs (their UIDLs stay unique).  Raised to 4294967295,
    the next delivery into the folder would panic; it stops past the
    highest archive UID below 2^31."""

    SITE = dict(extra_conf="pop3_uidl_format = %08Xu\n")

    @classmethod
    def build(cls, site):
        site.add_user("dan", hostile_scenario(50), record=False)
        forge_uidlist(site, "dan", "Old", last_uid=TOP)
        site.start(plugin_on=False)
        cls.ran = bd.doveadm(site.dc, "backfill", "run", "-u", "dan", fmt="json")

    def test_later_mail_gets_a_uid_past_the_archive_below_the_top(self):
        dc = self.site.dc
        self.assertEqual(self.ran.returncode, 0, self.ran.stderr[-2000:])
        uv, msgs = dc.mailbox("dan", "Old")
        self.assertEqual(len(msgs), 3)
        dc.append("dan", "Old", mg.Generator(78).message(1710000000))
        _, msgs = dc.mailbox("dan", "Old")
        self.assertEqual(len(msgs), 4)
        # archive UIDs 1 and 2 are below the top: the new one is past them
        self.assertGreaterEqual(msgs[-1].uid, 3)
        self.assertLess(msgs[-1].uid, 2 ** 31)
        self.assertEqual(dc.log_lines("Panic"), [])


class RunWithHeldCheckpoint:
    """`doveadm backfill run -u user` in the background; act() is called
    once, while the merge's first batch is committed to the live folder
    and its checkpoint waits for the state store (held by us)."""

    def __init__(self, site, user, listed):
        self.site, self.user, self.listed = site, user, listed

    def run(self, act):
        dc = self.site.dc
        p = subprocess.Popen(bd.doveadm_argv(dc, "backfill", "run", "-u", self.user,
                                             fmt="json"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True,
                             env=dc.sanitizer_env())
        path = os.path.join(self.site.state_dir, "state.db")
        deadline = time.time() + 60
        db = None
        while db is None and time.time() < deadline and p.poll() is None:
            try:
                db = statedb.connect(path, isolation_level=None, timeout=10)
                db.execute("SELECT 1 FROM merges").fetchall()
            except sqlite3.OperationalError:
                if db is not None:
                    db.close()
                db = None
                time.sleep(0.002)
        if db is None:
            out, err = p.communicate(timeout=300)
            raise AssertionError("the state store never showed the merge: exit %s\n%s"
                                 % (p.returncode, err[-3000:]))
        acted = False
        while p.poll() is None and not acted:
            try:
                row = db.execute("SELECT cursor FROM merges WHERE user = ?",
                                 (self.user,)).fetchone()
            except sqlite3.OperationalError:
                row = None
            if not row or " i:" not in (row[0] or ""):
                time.sleep(0.001)
                continue
            db.execute("BEGIN IMMEDIATE")
            n = db.execute("SELECT count(*) FROM journal WHERE user = ?",
                           (self.user,)).fetchone()[0]
            t_end = time.time() + 10
            while time.time() < t_end and self.listed() <= n:
                time.sleep(0.002)
            act()
            acted = True
            db.execute("ROLLBACK")
        out, err = p.communicate(timeout=300)
        db.close()
        return acted, p.returncode, out, err


def listed_in(path):
    """How many messages a live folder's dovecot-uidlist lists."""
    try:
        with open(path) as f:
            return max(0, len(f.readlines()) - 1)
    except FileNotFoundError:
        return 0


class InboxGivenUp(bftest.SiteCase):
    N = 600
    SITE = dict(plugin={"backfill_imap_uids": "archive",
                        "backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        g = mg.Generator(33)
        s = mg.Scenario()
        f = mg.Folder("INBOX", 1300000088)
        for i in range(cls.N):
            t = 1500000000 + i * 60
            f.msgs.append(mg.Msg(g.message(t, lines=3), set(), t))
        s.archive = [f]
        s.archive_uid_gap = 2
        s.live = [mg.Folder("INBOX", 1700000001)]
        site.add_user("ned", s, record=True)
        site.start(plugin_on=False)
        uidlist = os.path.join(site.dc.maildir("ned"), "dovecot-uidlist")
        held = RunWithHeldCheckpoint(site, "ned", lambda: listed_in(uidlist))
        cls.acted, cls.rc, _, cls.err = held.run(
            lambda: site.dc.lmtp_deliver("ned", g.message(1710000000)))
        cls.rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "ned")

    def test_the_way_was_given_up(self):
        self.assertTrue(self.acted)
        self.assertEqual(self.rc, 0, self.err[-2000:])
        self.assertEqual(self.rows[0]["state"], "done")
        self.assertEqual(self.rows[0]["uid_way_reasons"], "INBOX=uid-taken")
        uv, msgs = self.site.dc.mailbox("ned", "INBOX")
        self.assertNotEqual(uv, 1300000088)
        self.assertEqual(len(msgs), self.N + 1)

    def test_pop3_clients_of_the_old_server_see_their_uidls(self):
        old = self.site.views["ned"].uidls
        self.assertEqual(len(old), self.N)
        shown = set(self.site.dc.pop3_uidls("ned"))
        self.assertEqual([pair for pair in old if pair not in shown], [])

    def test_verify_checks_the_inbox_uidls(self):
        row = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "ned")[0][0]
        self.assertEqual((row["result"], row["uid_mismatches"]), ("ok", "0"))


class VerifyTampered(bftest.SiteCase):
    """Old's archive UIDNEXT is 5 above its last UID (mail expunged before
    the backup): the merge gives the live Old that UIDNEXT plus the
    margin (100000)."""

    @classmethod
    def build(cls, site):
        cls.scen = {}
        for i, user in enumerate(("vic", "val")):
            cls.scen[user] = hostile_scenario(60 + i)
            site.add_user(user, cls.scen[user], record=False)
        with open(uidlist_path(site, "vic", "Old")) as f:
            cls.last = int(f.read().splitlines()[-1].split(" ", 1)[0])
        for user in ("vic", "val"):
            forge_uidlist(site, user, "Old", uidnext=cls.last + 6)
        site.start(plugin_on=False)
        bd.doveadm_json(site.dc, "backfill", "run", "-A")

    def verify(self, user, ok=(0,)):
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", user,
                                  ok=ok)
        return rows[0]

    def folder_guid(self, user, folder):
        out = self.site.dc.doveadm("mailbox", "status", "-u", user, "guid",
                                   folder).stdout.decode()
        return re.search(r"guid=(\S+)", out).group(1)

    def test_recreated_folder_below_the_archive_uidnext(self):
        dc = self.site.dc
        row = self.verify("vic")
        self.assertEqual((row["result"], row["uid_mismatches"]), ("ok", "0"))
        out = dc.doveadm("mailbox", "status", "-u", "vic", "uidnext", "Old").stdout.decode()
        self.assertEqual(re.search(r"uidnext=(\d+)", out).group(1),
                         str(self.last + 6 + 100000))
        uv, _ = dc.mailbox("vic", "Old")
        self.assertEqual(uv, 1300000011)
        guid = self.folder_guid("vic", "Old")
        dc.doveadm("mailbox", "delete", "-u", "vic", "Old")
        dc.doveadm("mailbox", "create", "-u", "vic", "-g", guid, "Old")
        dc.doveadm("mailbox", "update", "-u", "vic", "--uid-validity",
                   str(uv), "Old")
        # the same messages at the same UIDs (1-3): only UIDNEXT differs
        for msg in self.scen["vic"].archive[1].msgs:
            dc.doveadm("save", "-u", "vic", "-m", "Old", input=msg.raw)
        _, msgs = dc.mailbox("vic", "Old")
        self.assertEqual([m.uid for m in msgs], [1, 2, 3])
        row = self.verify("vic", ok=(1,))
        self.assertEqual(row["result"], "uids")
        self.assertEqual(row["uid_mismatches"], "1")
        self.assertIn("Old: live folder Old has UIDNEXT 4, below %d (the archive's %d"
                      " plus backfill_imap_uid_margin)"
                      % (self.last + 6 + 100000, self.last + 6), row["uid_mismatch_list"])

    def test_copies_in_another_live_folder_are_not_ignored(self):
        self.assertEqual(self.verify("val")["result"], "ok")
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"))
        with db:
            db.execute("UPDATE journal SET mailbox_guid = ? WHERE user = 'val'"
                       " AND archive_mailbox = 'Old'", ("0" * 32,))
        db.close()
        row = self.verify("val", ok=(1,))
        self.assertEqual(row["result"], "uids")
        self.assertIn("Old: 3 copies are in live folder %s" % ("0" * 32),
                      row["uid_mismatch_list"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
