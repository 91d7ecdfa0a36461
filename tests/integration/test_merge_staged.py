"""Staged restores (issue 15 item 1): folders appear, disappear and are
renamed in an archive while its merge runs, and after it is done.

The archives live on a tmpfs of their own, so the merge copies (no
hardlinks) and a POP3 login with a 30 ms budget stops part-way through
Work (1,500 messages).  Every test counts exactly: the live mailbox ends as
the exact merge of everything that was ever restored, no message twice and
none missing.  A cursor that records a folder by its position in the sorted
folder list fails all three.
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
import maildir_gen as mg  # noqa: E402
import statedb  # noqa: E402

WORK = 1500


def scenario(seed, folders):
    """INBOX (30), Work (1,500) and the other folders (12 each) in the
    archive; a live INBOX with new mail and three redelivered archived
    messages."""
    g = mg.Generator(seed)
    old = 1500000000 + seed * 86400
    s = mg.Scenario()
    for i, name in enumerate(["INBOX", "Work"] + list(folders)):
        f = mg.Folder(name, 1400000000 + seed * 100 + i)
        n = {"INBOX": 30, "Work": WORK}.get(name, 12)
        for j in range(n):
            f.msgs.append(mg.Msg(g.message(old + j * 60 + i, lines=3),
                                 g.flags("INBOX" if name == "INBOX" else "Work"),
                                 old + j * 60 + i))
        s.archive.append(f)
    now = 1700000000 + seed
    live = mg.Folder("INBOX", 1690000000 + seed)
    for j in range(5):
        live.msgs.append(mg.Msg(g.message(now + j * 60), (), now + j * 60))
    for j in (1, 2, 3):
        live.msgs.append(mg.Msg(g.redelivered(s.archive[0].msgs[j].raw), (), now + 900 + j))
    s.live = [live]
    return s


class MergeStaged(bftest.SiteCase):
    SITE = dict(plugin={"backfill_login_budget": "30ms"})
    USERS = {"drew": ("Drafts",), "ella": ("Drafts",), "fred": ("Alpha", "Trash"),
             "gina": ("Zeta",), "hugo": ("Drafts",)}

    @classmethod
    def build(cls, site):
        cls.mount_tmpfs(site.archive_root, "256m")
        cls.staged = os.path.join(site.base, "staged")
        os.makedirs(cls.staged)
        for seed, (user, folders) in enumerate(sorted(cls.USERS.items()), 71):
            site.add_user(user, scenario(seed, folders))
        site.start(plugin_on=False)
        cls.pre = {u: site.dc.snapshot(u) for u in cls.USERS}
        # drew and ella: Drafts is restored later
        for user in ("drew", "ella", "hugo"):
            shutil.move(cls.folder(site, user, "Drafts"), os.path.join(cls.staged, user))
        site.enable_plugin()

    @staticmethod
    def folder(site, user, name):
        return os.path.join(site.archive_root, user, "Maildir", "." + name)

    def restore(self, user, name):
        """Copies the folder back as an operator's restore would (cp -a:
        owners, modes and mtimes of the backup)."""
        subprocess.run(["cp", "-a", os.path.join(self.staged, user),
                        self.folder(self.site, user, name)], check=True)

    def live_count(self, user, name):
        d = os.path.join(self.site.base, "live", user, "Maildir", "." + name, "cur")
        return len(os.listdir(d)) if os.path.isdir(d) else 0

    def part_way(self, user):
        """POP3 logins until the merge is inside Work, not finished."""
        for _ in range(50):
            self.site.dc.pop3(user).quit()
            n = self.live_count(user, "Work")
            self.assertFalse(self.site.finished_lines(user),
                             "the merge finished before Work was part-way: the test shows nothing")
            if 0 < n:
                self.assertLess(n, WORK)
                return n
        self.fail("the merge never reached Work")

    def exact(self, user):
        post = self.site.dc.snapshot(user)
        exp, _, _ = bftest.expected_after(self.pre[user], self.site.views[user])
        got = bftest.multiset(post)
        self.assertEqual(len(got), len(exp), bftest.diff(exp, got))
        self.assertEqual(got, exp, bftest.diff(exp, got))
        self.assertEqual(self.site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])

    # ------------------------------------------------ cursors of version 1
    def db(self):
        return statedb.connect(os.path.join(self.site.state_dir, "state.db"))

    def record(self, user):
        with self.db() as db:
            return db.execute("SELECT status, cursor, last_error FROM merges WHERE user = ?",
                              (user,)).fetchone()

    def downgrade_cursor(self, user):
        """Writes the merge's cursor as the previous plugin did (version 1:
        the position of the folder in the sorted folder list), as a store
        written before an upgrade holds it."""
        status, cursor, _ = self.record(user)
        items = cursor.split(" ")
        self.assertEqual(items[0], "2")
        self.assertFalse([i for i in items if i.startswith("i:")], "a clean stop has no intent")
        folders = [i.split(":", 4) for i in items if i.startswith("f:")]
        part = [f for f in folders if f[4] == "Work"]
        self.assertEqual(len(part), 1)
        order = sorted((f for f in os.listdir(os.path.join(self.site.archive_root, user, "Maildir"))
                        if f.startswith(".") and os.path.isdir(os.path.join(
                            self.site.archive_root, user, "Maildir", f))))
        names = ["INBOX"] + [f[1:] for f in order]
        v1 = "1:%d:%s" % (names.index("Work"), part[0][2])
        consumed = [i[2:] for i in items if i.startswith("c:")]
        if consumed:
            v1 += "|" + ";".join(consumed)
        with self.db() as db:
            db.execute("UPDATE merges SET cursor = ? WHERE user = ?", (v1, user))
        return v1

    def test_v1_cursor_resumed(self):
        """A merge part-way under the previous plugin (a version 1 cursor)
        goes on after the upgrade: nothing twice, nothing missing."""
        user = "gina"
        self.part_way(user)
        self.downgrade_cursor(user)
        self.site.wait_merged(user)
        self.exact(user)
        self.assertTrue(self.site.dc.log_lines(bftest.bf_log(user) + "merge cursor converted from version 1"))
        self.assertTrue(self.record(user)[1].startswith("2 "))

    def test_v1_cursor_refused_when_folders_changed(self):
        """A version 1 cursor whose folder list changed since (Drafts
        restored in front of Work) cannot say where it was: the merge is
        refused with what to do, and adds nothing more."""
        user = "hugo"
        self.part_way(user)
        self.downgrade_cursor(user)
        before = self.live_count(user, "Work") + self.live_count(user, "Drafts")
        self.restore(user, "Drafts")
        for _ in range(3):
            self.site.dc.pop3(user).quit()
        status, _, error = self.record(user)
        self.assertEqual(status, "failed")
        self.assertIn("version 1 cursor", error)
        self.assertIn("doveadm backfill revert", error)
        self.assertEqual(self.live_count(user, "Work") + self.live_count(user, "Drafts"), before)
        self.assertTrue(self.site.dc.log_lines(bftest.bf_log(user) + ".*version 1 cursor"))

    def test_folder_restored_while_merging(self):
        """Drafts (sorted before Work) appears while Work is part-way."""
        user = "drew"
        self.part_way(user)
        self.restore(user, "Drafts")
        self.site.wait_merged(user)
        self.exact(user)

    def test_folder_restored_after_done(self):
        """Drafts appears after the merge is done: the next login merges
        it, and only it."""
        user = "ella"
        self.site.wait_merged(user)
        self.assertEqual(self.live_count(user, "Drafts"), 0)
        self.restore(user, "Drafts")
        self.site.wait_merged(user, count=2)
        self.exact(user)
        # and once more: nothing changed, nothing merged
        self.site.dc.pop3(user).quit()
        self.assertEqual(len(self.site.finished_lines(user)), 2)
        self.exact(user)

    def test_folders_renamed_and_removed(self):
        """Alpha (done) is renamed Omega and Trash (done) is removed while
        Work is part-way: Work is finished, nothing merged again."""
        user = "fred"
        self.part_way(user)
        os.rename(self.folder(self.site, user, "Alpha"), self.folder(self.site, user, "Omega"))
        shutil.rmtree(self.folder(self.site, user, "Trash"))
        self.site.wait_merged(user)
        self.assertEqual(self.live_count(user, "Omega"), 0)
        self.exact(user)


class CutBatchStaged(bftest.SiteCase):
    """Item 1 meets item 7: a batch of Work committed to the mailbox whose
    checkpoint was cut (the store refused its journal entries, as a crash
    between the two would leave it), and then the archive changes before
    the merge runs again.
      ivan  Drafts (sorted before Work) is restored after the cut: its
            batch must not replace Work's pending one (whose landed copies
            would then be copied a second time)
      jill  Work itself is moved away after the cut: the merge can finish
            the rest, says which folder a cut batch waits for, revert
            removes nothing; Work restored again, the next run settles the
            batch: the exact result, and revert removes all of it.
      kim   (also with backfill_dedup = off, which reads no live folder's
            GUID before the merge) Work is renamed Zwork after the cut (same GUID and
            UIDVALIDITY: the cursor goes on there) and Drafts is restored
            in front of it: the copies that landed stay in live Work and
            are journalled there, the rest goes to live Zwork, nothing
            twice, and revert removes all of it."""

    USERS = ("ivan", "jill", "kim")
    DEDUP = "user"

    @classmethod
    def build(cls, site):
        cls.staged = os.path.join(site.base, "staged")
        os.makedirs(cls.staged)
        users = cls.USERS
        for seed, user in enumerate(users, 91):
            site.add_user(user, scenario(seed, ("Drafts",)))
        site.start(plugin_on=False)
        cls.pre = {u: site.dc.snapshot(u) for u in users}
        for user in set(users) & {"ivan", "kim"}:
            shutil.move(MergeStaged.folder(site, user, "Drafts"),
                        os.path.join(cls.staged, user))
        # the plugin stays off for logins: only doveadm merges here, so
        # that looking at a mailbox merges nothing
        for user in users:
            bd.doveadm_json(site.dc, "backfill", "status", "-u", user)

    def sql(self, q):
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"))
        try:
            db.execute(q)
            db.commit()
        finally:
            db.close()

    def cut_work_batch(self, user):
        self.sql("CREATE TRIGGER cut_%s BEFORE INSERT ON journal"
                 " WHEN NEW.user = '%s' AND NEW.mailbox = 'Work'"
                 " BEGIN SELECT RAISE(ABORT, 'cut'); END" % (user, user))
        r = bd.doveadm(self.site.dc, "backfill", "run", "-u", user, fmt="json")
        self.sql("DROP TRIGGER cut_%s" % user)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertGreater(MergeStaged.live_count(self, user, "Work"), 0,
                           "no batch of Work landed: the test shows nothing")

    def exact(self, user):
        MergeStaged.exact(self, user)

    def test_folder_restored_before_cut_folder(self):
        user = "ivan"
        self.cut_work_batch(user)
        subprocess.run(["cp", "-a", os.path.join(self.staged, user),
                        MergeStaged.folder(self.site, user, "Drafts")], check=True)
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "run", "-u", user)
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        self.exact(user)
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", user)
        self.assertEqual(rows[0]["result"], "ok", r.stderr)

    def test_cut_folder_removed_then_restored(self):
        user = "jill"
        dc = self.site.dc
        self.cut_work_batch(user)
        # Work goes away
        work = MergeStaged.folder(self.site, user, "Work")
        shutil.move(work, os.path.join(self.staged, user))
        landed = bftest.multiset(dc.snapshot(user))
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", user)
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        rows, _ = bd.doveadm_json(dc, "backfill", "status", "-u", user)
        error = bd.by_user(rows)[user]["last_error"]
        self.assertIn("Work", error)
        self.assertIn("restore the folder again", error)
        # doveadm logs to its stderr
        self.assertIn("Work: a batch of it that a crash cut", r.stderr)
        # the landed copies are in no journal: revert keeps everything
        r = bd.doveadm(dc, "backfill", "revert", "--yes", "-u", user, fmt="json")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(bftest.multiset(dc.snapshot(user)), landed)
        subprocess.run(["cp", "-a", os.path.join(self.staged, user), work], check=True)
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", user)
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        self.exact(user)
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "--yes", "-u", user)
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        self.assertEqual(bftest.multiset(dc.snapshot(user)), bftest.multiset(self.pre[user]))
    def test_cut_folder_renamed(self):
        user = "kim"
        dc = self.site.dc
        self.cut_work_batch(user)
        landed = MergeStaged.live_count(self, user, "Work")
        os.rename(MergeStaged.folder(self.site, user, "Work"),
                  MergeStaged.folder(self.site, user, "Zwork"))
        subprocess.run(["cp", "-a", os.path.join(self.staged, user),
                        MergeStaged.folder(self.site, user, "Drafts")], check=True)
        rows, r = bd.doveadm_json(dc, "backfill", "run", "-u", user)
        self.assertEqual(rows[0]["result"], "done", r.stderr)
        post = dc.snapshot(user)
        self.assertEqual(len(post["Work"][1]), landed, "the landed copies moved or were added to")
        work = [m.fingerprint for name in ("Work", "Zwork") for m in post[name][1]]
        self.assertEqual(len(work), len(set(work)), "Work copied twice")
        self.assertEqual(len(work), WORK)
        # exact, Work and Zwork together being the archive's Work
        exp, _, _ = bftest.expected_after(self.pre[user], self.site.views[user],
                                          dedup=self.DEDUP)
        got = [("Work" if m[0] == "Zwork" else m[0],) + tuple(m[1:])
               for m in bftest.multiset(post)]
        self.assertEqual(sorted(got), sorted(exp), bftest.diff(exp, got))
        self.assertIn("landed in live folder Work", r.stderr)
        # every archived message is there; the IMAP UID check (issue 19)
        # still flags a folder renamed part-way whose copies went the
        # archive way: they are split between two live folders now
        rows, r = bd.doveadm_json(dc, "backfill", "verify", "-u", user, ok=(0, 1))
        self.assertEqual((rows[0]["missing"], rows[0]["symlinks"], rows[0]["error"]),
                         ("0", "0", ""), r.stderr)
        self.assertIn(rows[0]["result"], ("ok", "uids"), r.stderr)
        # every copy is journalled, the landed ones in Work too
        rows, r = bd.doveadm_json(dc, "backfill", "revert", "--yes", "-u", user)
        self.assertEqual(rows[0]["result"], "reverted", r.stderr)
        self.assertEqual(bftest.multiset(dc.snapshot(user)), bftest.multiset(self.pre[user]))


class CutBatchRenamedDedupOff(CutBatchStaged):
    SITE = dict(plugin={"backfill_dedup": "off"})
    USERS = ("kim",)
    DEDUP = "off"
    test_folder_restored_before_cut_folder = None
    test_cut_folder_removed_then_restored = None


if __name__ == "__main__":
    unittest.main()
