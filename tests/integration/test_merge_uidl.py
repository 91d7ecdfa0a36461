"""POP3 UIDL guarantees beyond issue 3's numbered tests (brief, "Guarantees"):
no two messages of a mailbox ever show the same UIDL. When the live INBOX
reuses the archive's UIDVALIDITY, a live message may show a UIDL the old
server showed for another message; a client of the old server would then
skip it silently. The live message gets a fresh UIDL instead, the collision
is logged and counted.

Also: an empty backfill_keyword (global setting) sets no keyword.
"""
import collections
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402

UV = 1400012345


def collision_scenario():
    g = mg.Generator(31)
    s = mg.Scenario()
    old, now = 1500000000, 1700000000
    arch = mg.Folder("INBOX", UV)
    for i in range(5):
        arch.msgs.append(mg.Msg(g.message(old + i * 60), set(), old + i * 60))
    s.archive = [arch]
    live = mg.Folder("INBOX", UV)  # the new server reused the UIDVALIDITY
    for i in range(8):
        live.msgs.append(mg.Msg(g.message(now + i * 60), set(), now + i * 60))
    s.live = [live]
    return s


class MergeUidl(bftest.SiteCase):
    SITE = dict(plugin={"backfill_keyword": "",
                        "backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        site.add_user("uma", collision_scenario())
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("uma")
        cls.pre_uidls = site.dc.pop3_uidls("uma")
        site.enable_plugin()
        site.wait_merged("uma")
        cls.post = site.dc.snapshot("uma")
        cls.post_uidls = site.dc.pop3_uidls("uma")

    def test_scenario_really_collides(self):
        old = {u for u, _ in self.site.views["uma"].uidls}
        pre = {u for u, _ in self.pre_uidls}
        self.assertEqual(len(old & pre), 5)

    def test_uidls_unique_and_old_ones_kept(self):
        uidls = [u for u, _ in self.post_uidls]
        self.assertEqual(len(uidls), len(set(uidls)), "two messages show one UIDL")
        post = collections.Counter(self.post_uidls)
        for pair in self.site.views["uma"].uidls:
            self.assertIn(pair, post, "archived message lost its old UIDL")

    def test_colliding_live_messages_get_fresh_uidls(self):
        old = {u for u, _ in self.site.views["uma"].uidls}
        post = dict((fp, u) for u, fp in self.post_uidls)
        changed = 0
        for uidl, fp in self.pre_uidls:
            if uidl in old:
                self.assertNotEqual(post[fp], uidl)
                self.assertNotIn(post[fp], old)
                changed += 1
            else:
                self.assertEqual(post[fp], uidl, "a live UIDL changed without a collision")
        self.assertEqual(changed, 5)
        line = self.site.finished_lines("uma")[-1]
        self.assertRegex(line, r"\b5 POP3 UIDL collisions\b")
        self.assertEqual(len(self.site.dc.log_lines(bftest.bf_log("uma") + r"INBOX/uid \d+ showed POP3 UIDL")), 5)

    def test_live_uids_and_result(self):
        exp, _, _ = bftest.expected_after(self.pre, self.site.views["uma"], keyword="", hide="none")
        got = bftest.multiset(self.post)
        self.assertEqual(got, exp, bftest.diff(exp, got))
        uv, msgs = self.post["INBOX"]
        self.assertEqual(uv, UV)
        self.assertEqual([m.uid for m in msgs][:8], [m.uid for m in self.pre["INBOX"][1]])

    def test_empty_keyword_sets_none(self):
        for _, (_, msgs) in self.post.items():
            for m in msgs:
                self.assertFalse([f for f in m.flags if not f.startswith("\\")], m)


def gap_scenario():
    """The old INBOX had expunged most of its messages: archived UIDs 10,
    20, ... 50 (UIDNEXT 51), the live INBOX reuses its UIDVALIDITY and has
    8 messages.  Without the fix the merge would add 5 at live UIDs 9-13
    and deliveries after it would get UIDs 14, ... 20, ... whose UIDLs the
    merged copies show; with it, live UIDNEXT is raised to 51 first."""
    g = mg.Generator(32)
    s = mg.Scenario()
    old, now = 1500000000, 1700000000
    arch = mg.Folder("INBOX", UV)
    for i in range(5):
        arch.msgs.append(mg.Msg(g.message(old + i * 60), set(), old + i * 60))
    s.archive = [arch]
    s.archive_uid_gap = 9
    live = mg.Folder("INBOX", UV)
    for i in range(8):
        live.msgs.append(mg.Msg(g.message(now + i * 60), set(), now + i * 60))
    s.live = [live]
    s.later = [g.message(now + 3600 + i * 60) for i in range(45)]
    return s


class LaterDeliveries(bftest.SiteCase):
    """No delivery after the merge shows the UIDL of a merged message."""

    SITE = dict(plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        cls.scen = gap_scenario()
        site.add_user("ulf", cls.scen)
        site.start()
        site.wait_merged("ulf")
        for raw in cls.scen.later:
            site.dc.lmtp_deliver("ulf", raw)
        cls.post = site.dc.snapshot("ulf")
        cls.post_uidls = site.dc.pop3_uidls("ulf")

    def test_archive_had_gaps(self):
        self.assertEqual([m.uid for m in self.scen.archive[0].msgs], [10, 20, 30, 40, 50])

    def test_later_deliveries_get_uids_past_the_archive(self):
        uv, msgs = self.post["INBOX"]
        self.assertEqual(uv, UV)
        self.assertEqual(len(msgs), 8 + 5 + 45)
        uids = [m.uid for m in msgs]
        self.assertEqual(uids[:8], list(range(1, 9)), "live UIDs changed")
        self.assertGreaterEqual(min(uids[8 + 5:]), 51)

    def test_every_uidl_unique_and_old_ones_kept(self):
        uidls = [u for u, _ in self.post_uidls]
        self.assertEqual(len(uidls), 58)
        dups = [u for u, n in collections.Counter(uidls).items() if n > 1]
        self.assertEqual(dups, [], "two messages show one UIDL")
        post = collections.Counter(self.post_uidls)
        for pair in self.site.views["ulf"].uidls:
            self.assertIn(pair, post, "archived message lost its old UIDL")


class RepeatedArchivedUidl(bftest.SiteCase):
    """Two archived messages stored with one UIDL (a migration tool that
    repeated it): the first merged keeps it, the second gets Dovecot's own
    UIDL, so no two messages of the live INBOX show the same one."""

    SITE = dict(plugin={"backfill_pop3_hide": "none"})

    @classmethod
    def build(cls, site):
        g = mg.Generator(33)
        s = mg.Scenario()
        old = 1500000000
        arch = mg.Folder("INBOX", UV + 7)
        for i in range(4):
            uidl = "same-uidl" if i in (1, 3) else None
            arch.msgs.append(mg.Msg(g.message(old + i * 60), set(), old + i * 60, pop3_uidl=uidl))
        s.archive = [arch]
        s.live = [mg.Folder("INBOX", UV + 8)]
        cls.first = arch.msgs[1].raw
        site.add_user("ria", s, record=False)
        site.start()
        site.wait_merged("ria")
        cls.post_uidls = site.dc.pop3_uidls("ria")

    def test_first_keeps_it_second_gets_a_new_one(self):
        uidls = [u for u, _ in self.post_uidls]
        self.assertEqual(len(uidls), 4)
        self.assertEqual(len(set(uidls)), 4, "two messages show one UIDL")
        fp_first = mg.fingerprint_ref.fingerprint(self.first)[0]
        self.assertIn(("same-uidl", fp_first), self.post_uidls)
        self.assertEqual(len(self.site.dc.log_lines(r"POP3 UIDL same-uidl already shown by another merged message")), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
