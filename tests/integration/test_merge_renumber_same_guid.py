"""Two live messages with one GUID in different chunks of a renumbering's
move (review s7, diffreview F0/F11).

Dovecot gives a copy within a folder its source's GUID (Maildir and mdbox),
so a user who copied a message into its own folder has two live messages
with one GUID.  The move goes in chunks of 100 old UIDs; a copy made for
the first one stood for the second too: the second was taken for moved
already and expunged, in an uninterrupted run (153 messages for 154).  The
same after a kill between the chunks, where the earlier chunk's copies are
read again at the resume, and after a user's copy of a live message within
the folder while the move was cut (F11: the resume took it for the move's
copy and expunged its source).  Each case must end with every message there
once more than before (the 3 archived ones added) and every POP3 UIDL as
it was."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402

ARCHIVE_UV = 1300000201
N_LIVE = 150
CONF = bftest.CRASH_CONF
# user: where the move is cut (None: not cut); renumber-expunged:1 is
# after the first chunk's expunges, before the second chunk.  cy copies
# live UID 5 into INBOX while her move is cut (diffreview F11): the copy
# has UID 5's GUID, above the move's base.
CUTS = {"sam": None, "kim": "renumber-expunged:1", "cy": "renumber-intent"}
COPY_DURING_CUT = {"cy": 5}


def scenario(seed):
    g = mg.Generator(seed)
    s = mg.Scenario()
    f = mg.Folder("INBOX", ARCHIVE_UV)
    for i in range(3):
        t = 1500000000 + i * 3600
        f.msgs.append(mg.Msg(g.message(t, kind="plain"), set(), t))
    s.archive = [f]
    s.archive_uid_gap = 300
    s.live = [mg.Folder("INBOX", 1700000001)]
    s.later = [g.message(1700000000 + i, kind="plain") for i in range(N_LIVE)]
    return s


class SameGuidChunks(bftest.SiteCase):
    SITE = dict(extra_conf=CONF, plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        dc = site.dc
        scens = {u: scenario(7 + i) for i, u in enumerate(CUTS)}
        for u, s in scens.items():
            site.add_user(u, s, record=False)
        site.start(plugin_on=False)
        cls.before, cls.uidls, cls.cut = {}, {}, {}
        for u, s in scens.items():
            for raw in s.later:
                dc.lmtp_deliver(u, raw)
            # the user's duplicate: UID 151 with the GUID of UID 1, in the
            # move's second chunk (doveadm copy, not IMAP: INBOX stays a
            # folder no IMAP client has seen, and is renumbered)
            dc.doveadm("copy", "-u", u, "INBOX", "mailbox", "INBOX", "uid", "1")
            guids = dc.doveadm("fetch", "-u", u, "guid", "mailbox", "INBOX",
                               "uid", "1,151").stdout.split()
            assert len(guids) == 4 and guids[1] == guids[3], guids
            cls.before[u] = dc.mailbox(u, "INBOX")[1]
            cls.uidls[u] = dc.pop3_uidls(u)
        site.enable_plugin()
        for u, point in CUTS.items():
            env = dict(os.environ, BACKFILL_TEST_CRASH=point) if point else None
            r = bd.doveadm(dc, "backfill", "run", "-u", u, fmt="json", env=env)
            cls.cut[u] = r.returncode
            bftest.remove_locks(dc, u)
        # the user's copy while the move is cut (plugin off: a session
        # would resume the merge)
        dc.restart(mail_plugins="")
        for u, uid in COPY_DURING_CUT.items():
            dc.doveadm("copy", "-u", u, "INBOX", "mailbox", "INBOX", "uid", str(uid))
        site.enable_plugin()
        for u, point in CUTS.items():
            if point:
                r = bd.doveadm(dc, "backfill", "run", "-u", u, fmt="json")
                assert r.returncode == 0, r.stderr

    def check(self, user):
        dc = self.site.dc
        self.assertEqual(len(self.before[user]), N_LIVE + 1)
        uv, after = dc.mailbox(user, "INBOX")
        self.assertEqual(uv, ARCHIVE_UV)
        self.assertEqual(len(after), 3 + N_LIVE + 1 + (user in COPY_DURING_CUT),
                         "a live message was lost by the move")
        uidls = dc.pop3_uidls(user)
        self.assertEqual(len(uidls), len({u for u, _ in uidls}), "two messages show one UIDL")
        self.assertTrue(set(self.uidls[user]) <= set(uidls),
                        set(self.uidls[user]) - set(uidls))
        rows, r = bd.doveadm_json(dc, "backfill", "status", "-u", user)
        self.assertEqual((rows[0]["state"], rows[0]["uid_ways"]), ("done", "INBOX=renumber"))

    def test_uninterrupted(self):
        self.assertEqual(self.cut["sam"], 0)
        self.check("sam")

    def test_cut_between_the_chunks(self):
        self.assertEqual(self.cut["kim"], -9)
        self.check("kim")

    def test_users_copy_while_cut(self):
        """The user's copy is not the move's: UID 5 is moved, not
        expunged for it."""
        self.assertEqual(self.cut["cy"], -9)
        self.check("cy")


if __name__ == "__main__":
    unittest.main(verbosity=2)
