#!/usr/bin/python3
"""Issue 8: no re-download storm, even for POP3 clients that forgot their
UIDLs.

The story, per user: the old server's INBOX had messages the POP3 client
had downloaded (seen) and some it had not yet (unseen). After the crash
the client polled the new, empty mailbox (two new messages there), so, as
Outlook, Thunderbird and mpop do, it forgot every old UIDL. Then the
archive is restored and merged on a POP3 login, and the client polls
again. With the shipped settings (pop3_deleted_flag = "$POP3Deleted",
pop3_delete_type = expunge):

  backfill_pop3_hide  the client downloads
  seen (default)      each unseen restored message once, no seen one
  none                every restored message (only the UIDLs are kept)
  all                 nothing restored

IMAP shows every message in every case; the live messages' UIDLs never
change; a later POP3 DELE of an offered message still deletes it.
"""
import collections
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bftest  # noqa: E402
from bftest import mg  # noqa: E402
import fingerprint_ref  # noqa: E402

USERS = {"alice": "seen", "bob": "none", "carol": "all"}
N_SEEN, N_UNSEEN, N_LIVE = 6, 3, 2


def scenario(seed):
    g = mg.Generator(seed)
    s = mg.Scenario()
    inbox = mg.Folder("INBOX", 1400000000 + seed)
    for i in range(N_SEEN + N_UNSEEN):
        date = 1500000000 + i * 3600
        flags = {"\\Seen"} if i < N_SEEN else set()
        inbox.msgs.append(mg.Msg(g.message(date, kind="plain"), flags, date))
    s.archive = [inbox]
    live = mg.Folder("INBOX", 1700000000 + seed)
    for i in range(N_LIVE):
        date = 1760000000 + i * 60
        live.msgs.append(mg.Msg(g.message(date, kind="plain"), (), date))
    s.live = [live]
    return s


class Client:
    """Leaves mail on the server; downloads what has an unknown UIDL and
    forgets the UIDLs the server no longer lists."""

    def __init__(self):
        self.known = set()
        self.downloads = collections.Counter()   # fingerprint -> times

    def poll(self, dc, user):
        c = dc.pop3(user)
        try:
            listing = {}
            for line in c.uidl()[1]:
                num, uidl = line.decode().split(" ", 1)
                listing[uidl] = int(num)
            got = []
            for uidl, num in listing.items():
                if uidl not in self.known:
                    raw = b"\n".join(c.retr(num)[1]) + b"\n"
                    fp = fingerprint_ref.fingerprint(raw)[0]
                    self.downloads[fp] += 1
                    got.append(fp)
            self.known = set(listing)
            return got, listing
        finally:
            c.quit()


class Pop3ForgetfulClient(bftest.SiteCase):
    SITE = dict(extra_conf="pop3_delete_type = expunge\n")

    @classmethod
    def build(cls, site):
        cls.scen = {}
        for n, (user, hide) in enumerate(USERS.items()):
            cls.scen[user] = scenario(n + 1)
            site.add_user(user, cls.scen[user], record=False,
                          extra="userdb_backfill_pop3_hide=" + hide)
        # The archives come back only after the clients polled the new
        # server: keep them aside until then.
        cls.aside = site.archive_root + ".later"
        os.rename(site.archive_root, cls.aside)
        os.makedirs(site.archive_root)
        site.start()

    def fps(self, folder):
        return [m.fingerprint for m in folder.msgs]

    def test_forgetful_clients(self):
        site = self.site
        clients, live_uidls = {}, {}
        for user in USERS:
            clients[user] = Client()
            got, listing = clients[user].poll(site.dc, user)
            # the incident: only the new mail is there
            self.assertEqual(len(got), N_LIVE, user)
            live_uidls[user] = dict((v, k) for k, v in listing.items())
        os.rmdir(site.archive_root)
        os.rename(self.aside, site.archive_root)
        for user in USERS:
            site.wait_merged(user, service="pop3")

        for user, hide in USERS.items():
            archive = self.scen[user].archive[0]
            seen_fps = self.fps(archive)[:N_SEEN]
            unseen_fps = self.fps(archive)[N_SEEN:]
            got, listing = clients[user].poll(site.dc, user)
            want = {"seen": unseen_fps, "none": seen_fps + unseen_fps,
                    "all": []}[hide]
            self.assertEqual(collections.Counter(got), collections.Counter(want),
                             "%s (backfill_pop3_hide=%s)" % (user, hide))
            # the live messages kept their UIDLs
            for uidl in live_uidls[user].values():
                self.assertIn(uidl, listing, user)
            # IMAP shows everything, hidden or not
            c = site.dc.imap(user)
            try:
                typ, data = c.select("INBOX", readonly=True)
                self.assertEqual(int(data[0]), N_SEEN + N_UNSEEN + N_LIVE, user)
            finally:
                c.logout()
            # polling again downloads nothing: each offered message once
            again, _ = clients[user].poll(site.dc, user)
            self.assertEqual(again, [], user)

        # A later DELE of an offered restored message deletes it.
        user = "alice"
        c = site.dc.pop3(user)
        try:
            listing = {}
            for line in c.uidl()[1]:
                num, uidl = line.decode().split(" ", 1)
                listing[int(num)] = uidl
            victim = None
            for num in listing:
                raw = b"\n".join(c.retr(num)[1]) + b"\n"
                if fingerprint_ref.fingerprint(raw)[0] in self.fps(self.scen[user].archive[0]):
                    victim = num
                    break
            self.assertIsNotNone(victim)
            c.dele(victim)
        finally:
            c.quit()
        c = site.dc.pop3(user)
        try:
            uidls = [line.decode().split(" ", 1)[1] for line in c.uidl()[1]]
        finally:
            c.quit()
        self.assertNotIn(listing[victim], uidls)
        c = site.dc.imap(user)
        try:
            typ, data = c.select("INBOX", readonly=True)
            self.assertEqual(int(data[0]), N_SEEN + N_UNSEEN + N_LIVE - 1)
        finally:
            c.logout()
        site.dc.assert_log_clean()


if __name__ == "__main__":
    unittest.main(verbosity=2)
