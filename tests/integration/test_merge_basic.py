"""Issue 3, tests 1-4: dedup (user, mailbox and off), flags/keywords/dates,
folder mapping and creation, POP3 UIDLs of the old server, live UIDVALIDITY
and UIDs unchanged.

One private Dovecot, three users with per-user settings from userdb extra
fields (as an operator would stage a migration):
  alice  backfill_dedup=user (default), backfill_pop3_hide=seen (default)
  bob    backfill_dedup=mailbox, backfill_pop3_hide=none
  carol  backfill_dedup=off, backfill_keyword=$Restored, backfill_pop3_hide=all
(an empty userdb field reaches the plugin as "yes": empty keyword is tested
with the global setting in test_merge_misc.py)
Each has the standard scenario of tests/lib/maildir_gen.py (seeds differ).
"""
import collections
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402

USERS = {
    "alice": dict(seed=1, extra="", dedup="user", keyword=bftest.KEYWORD, hide="seen"),
    "bob": dict(seed=2, extra="userdb_backfill_dedup=mailbox userdb_backfill_pop3_hide=none",
                dedup="mailbox", keyword=bftest.KEYWORD, hide="none"),
    "carol": dict(seed=3, extra="userdb_backfill_dedup=off userdb_backfill_keyword=$Restored userdb_backfill_pop3_hide=all",
                  dedup="off", keyword="$Restored", hide="all"),
}


class MergeBasic(bftest.SiteCase):
    # the plugin emits an event at the end of a merge: count it in stats
    SITE = dict(extra_conf=(
        "metric backfill_merges {\n"
        "  filter = event=backfill_merge_finished\n"
        "  fields = added duplicates skipped\n"
        "}\n"))

    @classmethod
    def build(cls, site):
        cls.scen = {}
        for user, u in USERS.items():
            cls.scen[user] = mg.standard_scenario(u["seed"])
            site.add_user(user, cls.scen[user], extra=u["extra"])
        site.start(plugin_on=False)
        cls.pre, cls.pre_uidls = {}, {}
        for user in USERS:
            cls.pre[user] = site.dc.snapshot(user)
            cls.pre_uidls[user] = site.dc.pop3_uidls(user)
        site.enable_plugin()
        cls.post, cls.post_uidls, cls.folders, cls.subs = {}, {}, {}, {}
        for user in USERS:
            site.wait_merged(user)
            cls.post[user] = site.dc.snapshot(user)
            cls.folders[user] = site.dc.folders(user)
            cls.subs[user] = site.dc.subscriptions(user)
            cls.post_uidls[user] = site.dc.pop3_uidls(user)

    def expected(self, user):
        u = USERS[user]
        return bftest.expected_after(self.pre[user], self.site.views[user], dedup=u["dedup"],
                                     keyword=u["keyword"], hide=u["hide"])

    # ---------------------------------------------------------- tests 1, 2
    def check_result(self, user):
        exp, _, _ = self.expected(user)
        got = bftest.multiset(self.post[user])
        self.assertEqual(len(got), len(exp), bftest.diff(exp, got))
        self.assertEqual(got, exp, bftest.diff(exp, got))

    def test_1_dedup_user_scope(self):
        self.check_result("alice")
        # the identical archived pair with one live copy gives two in total
        fp = mg.Msg(self.scen["alice"].named["archive_twice"]).fingerprint
        inbox = [m for m in self.post["alice"]["INBOX"][1] if m.fingerprint == fp]
        self.assertEqual(len(inbox), 2)
        # a message live in two folders and archived once: not added
        fp = mg.Msg(self.scen["alice"].named["live_two_folders"]).fingerprint
        self.assertEqual(sum(m.fingerprint == fp for _, (_, ms) in self.post["alice"].items() for m in ms), 2)
        # live only in Trash: user scope counts it, nothing added to INBOX
        fp = mg.Msg(self.scen["alice"].named["live_trash_only"]).fingerprint
        self.assertFalse([m for m in self.post["alice"]["INBOX"][1] if m.fingerprint == fp])

    def test_1_dedup_mailbox_scope(self):
        self.check_result("bob")
        fp = mg.Msg(self.scen["bob"].named["live_trash_only"]).fingerprint
        self.assertEqual(len([m for m in self.post["bob"]["INBOX"][1] if m.fingerprint == fp]), 1)

    def test_1_dedup_off(self):
        self.check_result("carol")
        n_arch = sum(len(ms) for _, (_, ms) in self.site.views["carol"].snapshot.items())
        n_pre = sum(len(ms) for _, (_, ms) in self.pre["carol"].items())
        n_post = sum(len(ms) for _, (_, ms) in self.post["carol"].items())
        self.assertEqual(n_post, n_pre + n_arch)

    def test_2_folders_mapped_and_created(self):
        for user in USERS:
            folders = self.folders[user]
            self.assertIn("Work", folders)
            self.assertIn("Work.Projects", folders)
            # archive "Sent Messages" (\Sent) went to the live \Sent folder
            self.assertNotIn("Sent Messages", folders, user)
            arch_sent = len(self.site.views[user].snapshot["Sent Messages"][1])
            self.assertGreaterEqual(len(self.post[user]["Sent"][1]),
                                    len(self.pre[user]["Sent"][1]) + arch_sent)
            # subscribed as in the archive (Work was not, Work.Projects was)
            self.assertNotIn("Work", self.subs[user])
            self.assertIn("Work.Projects", self.subs[user])

    def test_2_flags_keywords_dates(self):
        # check_result compares flags, keywords and INTERNALDATE; here make
        # sure the scenario really exercised keywords and old dates.
        added = [m for _, (_, ms) in self.post["alice"].items() for m in ms
                 if bftest.KEYWORD in m.flags]
        self.assertTrue(any("$Label1" in m.flags for m in added))
        self.assertTrue(any("\\Answered" in m.flags for m in added))
        self.assertTrue(any("\\Draft" in m.flags for m in added))
        self.assertTrue(all(m.internaldate < 1600000000 for m in added))
        carol_kw = [m for _, (_, ms) in self.post["carol"].items() for m in ms
                    if bftest.KEYWORD in m.flags]
        self.assertEqual(carol_kw, [], "backfill_keyword=$Restored sets only that")
        self.assertTrue(any("$Restored" in m.flags for _, (_, ms) in self.post["carol"].items() for m in ms))

    # ---------------------------------------------------------- test 3
    def check_uidls(self, user):
        _, added_inbox, added_msgs = self.expected(user)
        old = collections.defaultdict(set)
        for uidl, fp in self.site.views[user].uidls:
            old[fp].add(uidl)
        pre = collections.Counter(self.pre_uidls[user])
        post = collections.Counter(self.post_uidls[user])
        # every live message keeps its UIDL
        self.assertEqual(pre - post, collections.Counter(), "live UIDLs changed")
        shown = collections.Counter(fp for m, flags in added_msgs if bftest.HIDE not in flags
                                    for fp in [m.fingerprint])
        extra = post - pre
        self.assertEqual(collections.Counter(fp for _, fp in extra.elements()), shown,
                         "restored messages offered to POP3")
        for uidl, fp in extra.elements():
            self.assertIn(uidl, old[fp], "restored message shows a UIDL the old server did not")
        uidls = [u for u, _ in self.post_uidls[user]]
        self.assertEqual(len(uidls), len(set(uidls)), "duplicate UIDLs")

    def test_3_pop3_uidls_user_hide_seen(self):
        self.check_uidls("alice")
        # stored 'P' UIDLs and format-made ones both came through
        shown = set(u for u, _ in self.post_uidls["alice"])
        old = set(u for u, _ in self.site.views["alice"].uidls)
        self.assertTrue(any(u.startswith("UID") for u in shown & old))
        self.assertTrue(any(not u.startswith("UID") for u in shown & old))

    def test_3_pop3_uidls_hide_none(self):
        self.check_uidls("bob")

    def test_3_pop3_uidls_hide_all(self):
        self.check_uidls("carol")
        self.assertEqual(collections.Counter(self.post_uidls["carol"]),
                         collections.Counter(self.pre_uidls["carol"]))

    # ---------------------------------------------------------- test 4
    def test_4_live_uidvalidity_and_uids_unchanged(self):
        for user in USERS:
            for folder, (uv, msgs) in self.pre[user].items():
                puv, pmsgs = self.post[user][folder]
                self.assertEqual(uv, puv, "%s %s UIDVALIDITY" % (user, folder))
                by_uid = {m.uid: m for m in pmsgs}
                for m in msgs:
                    self.assertIn(m.uid, by_uid)
                    self.assertEqual(by_uid[m.uid].fingerprint, m.fingerprint)
                    self.assertEqual(by_uid[m.uid].flags, m.flags)
                    self.assertEqual(by_uid[m.uid].internaldate, m.internaldate)
                if msgs:
                    new_uids = [x.uid for x in pmsgs if x.uid not in {m.uid for m in msgs}]
                    self.assertTrue(all(u > max(m.uid for m in msgs) for u in new_uids))

    # ---------------------------------------------------------- stats
    def test_stats_event_counts_merges(self):
        r = self.site.dc.doveadm("-f", "tab", "stats", "dump", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [l.split("\t") for l in r.stdout.decode().splitlines()]
        rows = [dict(zip(rows[0], l)) for l in rows[1:]]
        mine = [x for x in rows if x.get("metric_name") == "backfill_merges"]
        self.assertTrue(mine, r.stdout.decode())
        self.assertEqual(int(mine[0]["count"]), len(USERS), mine)

    # ---------------------------------------------------------- logs
    def test_log_lines_and_once(self):
        for user in USERS:
            lines = self.site.finished_lines(user)
            self.assertEqual(len(lines), 1, "%s merged %d times" % (user, len(lines)))
            exp, _, _ = self.expected(user)
            n_added = len(exp) - sum(len(ms) for _, (_, ms) in self.pre[user].items())
            self.assertRegex(lines[0], r"\b%d added\b" % n_added)
            self.assertTrue(self.site.dc.log_lines(bftest.bf_log(user) + "merge started"))
        self.site.dc.assert_log_clean()


def message_files(maildir):
    """{path: (inode, size, mtime_ns)} of every message file (not the
    ctime: a new link to a file changes it)."""
    out = {}
    for root, dirs, files in os.walk(maildir):
        if os.path.basename(root) not in ("cur", "new"):
            continue
        for f in files:
            st = os.lstat(os.path.join(root, f))
            out[os.path.join(root, f)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


class HardlinkMerge(bftest.SiteCase):
    """Issue 3, "Copy": Maildir to Maildir on one filesystem hardlinks.  An
    archive owned by the mail user next to the live mailboxes: the merged
    copies are links to the archived files, flags, keywords and received
    dates are kept all the same, and the archive's files keep their names,
    sizes and mtimes (the received date of Maildir)."""

    SITE = dict()

    @classmethod
    def build(cls, site):
        site.add_user("hana", mg.standard_scenario(51), freeze=False)
        cls.arch = os.path.join(site.base, "archive", "hana", "Maildir")
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("hana")
        cls.before = message_files(cls.arch)
        site.enable_plugin()
        site.wait_merged("hana")
        cls.post = site.dc.snapshot("hana")
        cls.after = message_files(cls.arch)
        live = message_files(os.path.join(site.base, "live", "hana", "Maildir"))
        cls.live_inodes = {v[0] for v in live.values()}

    def test_copies_are_links(self):
        linked = [p for p, v in self.after.items() if v[0] in self.live_inodes]
        self.assertGreater(len(linked), 0.8 * len(self.after),
                           "%d of %d archived files linked" % (len(linked), len(self.after)))

    def test_flags_keywords_dates_kept(self):
        exp, _, _ = bftest.expected_after(self.pre, self.site.views["hana"])
        got = bftest.multiset(self.post)
        self.assertEqual(got, exp, bftest.diff(exp, got))

    def test_archive_files_untouched(self):
        self.assertEqual(self.after, self.before)


class RepeatsAcrossBatches(bftest.SiteCase):
    """Multiset dedup when the identical archived copies lie in different
    batches and POP3 sessions (the budget stops each login early): the
    live copy is consumed once, by the first of them, and the state that
    says so survives every checkpoint and resume.  The final mailbox holds
    exactly as many copies as the archive (3), not 2 and not 4."""

    # A login merges about 200-330 messages here (30 ms budget and the
    # 100 ms progress slice): 3000 spans about 9 logins, and still 3 on a
    # machine 2.5 times faster (1200 would have fitted in 2 there).
    N = 3000
    AT = (0, 1450, 2950)  # a full-copy merge commits every 200

    SITE = dict(plugin={"backfill_login_budget": "30ms"})

    @classmethod
    def build(cls, site):
        g = mg.Generator(41)
        s = mg.Scenario()
        old, now = 1500000000, 1700000000
        cls.x = g.message(old, lines=6)
        arch = mg.Folder("INBOX", 1400000041)
        for i in range(cls.N):
            raw = cls.x if i in cls.AT else g.message(old + 60 + i * 60, lines=3)
            arch.msgs.append(mg.Msg(raw, {"\\Seen"}, old + i * 60))
        s.archive = [arch]
        live = mg.Folder("INBOX", 1690000041)
        live.msgs.append(mg.Msg(g.redelivered(cls.x), (), now))
        for i in range(5):
            live.msgs.append(mg.Msg(g.message(now + 60 + i * 60), (), now + 60 + i * 60))
        s.live = [live]
        site.add_user("rena", s, record=False)
        site.start()
        site.wait_merged("rena", service="pop3", timeout=300)
        cls.post = site.dc.snapshot("rena")

    def test_spread_over_sessions(self):
        starts = self.site.dc.log_lines(bftest.bf_log("rena") + "merge (started|resumed)")
        print("\n%d messages merged in %d POP3 logins" % (self.N, len(starts)),
              file=sys.stderr)
        self.assertGreater(len(starts), 2, "the merge did not span several sessions")

    def test_three_copies_in_the_end(self):
        fp_x = mg.fingerprint_ref.fingerprint(self.x)[0]
        _, msgs = self.post["INBOX"]
        self.assertEqual(len(msgs), self.N + 6 - 1)
        self.assertEqual(sum(1 for m in msgs if m.fingerprint == fp_x), 3)
        line = self.site.finished_lines("rena")[-1]
        self.assertRegex(line, r"\b%d added, 1 duplicates\b" % (self.N - 1))


if __name__ == "__main__":
    unittest.main(verbosity=2)
