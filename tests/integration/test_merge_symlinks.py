"""Symlinks planted in an archive are never followed (issue 15 item 2).

All virtual users share the mail uid, so the kernel lets one user's
restored archive point into another user's live mail: a message file of
sly's archive symlinked to a live message of vic, and a folder of sly's
archive symlinked to vic's whole live Maildir.  Merging sly must add none
of vic's mail, skip and log both symlinks with their paths, count them
(status: last_error; plan: skipped), and merge everything else exactly.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
import maildir_gen as mg  # noqa: E402
import statedb  # noqa: E402


class MergeSymlinks(bftest.SiteCase):

    @classmethod
    def build(cls, site):
        site.add_user("sly", mg.standard_scenario(81))
        site.add_user("vic", mg.standard_scenario(82), record=False)
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("sly")
        cls.vic = site.dc.snapshot("vic")
        vic_maildir = os.path.join(site.base, "live", "vic", "Maildir")
        cur = os.path.join(vic_maildir, "cur")
        cls.vic_file = os.path.join(cur, sorted(os.listdir(cur))[0])
        sly = os.path.join(site.archive_root, "sly", "Maildir")
        cls.file_link = os.path.join(sly, "cur", "1600000000.M1P1.old-mx,S=100:2,S")
        os.symlink(cls.vic_file, cls.file_link)
        cls.folder_link = os.path.join(sly, ".Stolen")
        os.symlink(vic_maildir, cls.folder_link)
        site.enable_plugin()

    def record(self, user):
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"))
        try:
            return db.execute("SELECT status, skipped, last_error FROM merges WHERE user = ?",
                              (user,)).fetchone()
        finally:
            db.close()

    def test_symlinks_skipped(self):
        site = self.site
        rows, _ = bd.doveadm_json(site.dc, "backfill", "plan", "-u", "sly")
        plan = bd.by_user(rows)["sly"]
        self.assertGreaterEqual(int(plan["skipped"]), 1, plan)

        site.wait_merged("sly")
        post = site.dc.snapshot("sly")
        got = bftest.multiset(post)
        vic_fps = {m.fingerprint for _, (uv, msgs) in self.vic.items() for m in msgs}
        leaked = [m for m in got if m[1] in vic_fps]
        self.assertEqual(leaked, [], "vic's mail merged into sly's mailbox")
        self.assertNotIn("Stolen", post)
        exp, _, _ = bftest.expected_after(self.pre, site.views["sly"])
        self.assertEqual(got, exp, bftest.diff(exp, got))

        log = "\n".join(site.dc.log_lines(bftest.bf_log("sly")))
        self.assertIn("a symlink is never followed: %s" % self.file_link, log)
        self.assertIn("archive folder Stolen: skipped, a symlink is never followed: %s"
                      % self.folder_link, log)
        status, skipped, last_error = self.record("sly")
        self.assertEqual(status, "done")
        self.assertGreaterEqual(skipped, 1)
        self.assertIn("archive symlinks skipped (never followed): 2", last_error)
        rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "sly")
        self.assertIn("symlinks skipped", bd.by_user(rows)["sly"]["last_error"])
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])

    def test_verify_reads_no_symlink(self):
        # verify reads the archive too: it must not follow the links
        # either (vic's message would count as archived and "missing"),
        # and the operator learns of them: result symlinks, exit 1
        site = self.site
        site.wait_merged("sly")
        rows, r = bd.doveadm_json(site.dc, "backfill", "verify", "-u", "sly", ok=(1,))
        row = bd.by_user(rows)["sly"]
        self.assertEqual((row["result"], row["missing"], row["symlinks"]),
                         ("symlinks", "0", "2"), (row, r.stderr))
        # the old server's view was recorded before the links were made
        self.assertEqual(int(row["archived"]), len(site.views["sly"].messages()), row)
        # doveadm logs to its stderr
        self.assertIn("%s is a symlink: not read, not verified" % self.file_link, r.stderr)
        self.assertIn("archive folder Stolen: %s" % self.folder_link, r.stderr)


class MergeSymlinkedDirs(bftest.SiteCase):
    """The same two forms one level further: a folder whose cur/ is a
    symlink to vic's live cur/ (its folder directory is real, so the
    folder check let it through), and a user whose whole archive
    directory is a relative symlink to vic's archive, inside the archive
    root (the root check let it through).  Neither may read vic's mail."""

    @classmethod
    def build(cls, site):
        site.add_user("cy", mg.standard_scenario(83))
        site.add_user("sue", mg.standard_scenario(84), record=False)
        site.add_user("vic", mg.standard_scenario(82))
        site.start(plugin_on=False)
        cls.pre = {u: site.dc.snapshot(u) for u in ("cy", "sue")}
        cls.vic = site.dc.snapshot("vic")
        cls.vic_archive = {m.fingerprint for m in site.views["vic"].messages()}
        live_cur = os.path.join(site.base, "live", "vic", "Maildir", "cur")
        cy = os.path.join(site.archive_root, "cy", "Maildir")
        cls.cur_link = os.path.join(cy, ".Work", "cur")
        shutil.rmtree(cls.cur_link)
        os.symlink(live_cur, cls.cur_link)
        sue = os.path.join(site.archive_root, "sue", "Maildir")
        shutil.rmtree(sue)
        cls.sue_link = sue
        os.symlink("../vic/Maildir", sue)
        site.enable_plugin()

    def fingerprints(self, user):
        return {m[1] for m in bftest.multiset(self.site.dc.snapshot(user))}

    def test_folder_with_symlinked_cur_skipped(self):
        site = self.site
        site.wait_merged("cy")
        vic_live = {m.fingerprint for _, (uv, msgs) in self.vic.items() for m in msgs}
        self.assertEqual(self.fingerprints("cy") & vic_live, set(),
                         "vic's mail merged into cy's mailbox")
        log = "\n".join(site.dc.log_lines(bftest.bf_log("cy")))
        self.assertIn("archive folder Work: skipped, a symlink is never followed: %s"
                      % self.cur_link, log)
        # the other folders are merged
        inbox = {m.fingerprint for m in site.views["cy"].snapshot["INBOX"][1]}
        self.assertTrue(inbox and inbox <= self.fingerprints("cy"))
        rows, r = bd.doveadm_json(site.dc, "backfill", "verify", "-u", "cy", ok=(1,))
        self.assertEqual(bd.by_user(rows)["cy"]["result"], "symlinks", r.stderr)
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])

    def test_symlinked_archive_dir_refused(self):
        site = self.site
        site.dc.imap("sue").logout()
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "sue", ok=(0, 1, 2))
        self.assertEqual(self.fingerprints("sue") & self.vic_archive, set(),
                         "vic's archive merged into sue's mailbox")
        got = bftest.multiset(site.dc.snapshot("sue"))
        self.assertEqual(got, bftest.multiset(self.pre["sue"]))
        log = "\n".join(site.dc.log_lines(bftest.bf_log("sue")))
        self.assertIn(self.sue_link, log)
        self.assertIn("symlink", log)
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


class MergeForeignFiles(bftest.SiteCase):
    """Foreign files in a restored Maildir (tar restores them): a FIFO
    and a character device (/dev/zero's numbers) named like message files
    in cur/.  Opening the FIFO blocks until someone writes to it, reading
    the device never ends: either would hang the merge (a login, doveadm
    run) for good.  They are skipped, logged with their paths and
    counted like symlinks; the rest is merged exactly."""

    @classmethod
    def build(cls, site):
        site.add_user("fay", mg.standard_scenario(85))
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("fay")
        cur = os.path.join(site.archive_root, "fay", "Maildir", "cur")
        cls.fifo = os.path.join(cur, "1600000001.M1P1.old-mx,S=100:2,S")
        os.mkfifo(cls.fifo)
        cls.dev = os.path.join(cur, "1600000002.M2P2.old-mx,S=100:2,S")
        os.mknod(cls.dev, 0o644 | stat.S_IFCHR, os.makedev(1, 5))

    def test_foreign_files_skipped(self):
        site = self.site
        try:
            r = bd.doveadm(site.dc, "backfill", "run", "-u", "fay", fmt="json", timeout=60)
        except subprocess.TimeoutExpired:
            self.fail("doveadm backfill run hung on a FIFO or device in the archive")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)[0]["result"], "done", r.stderr)
        got = bftest.multiset(site.dc.snapshot("fay"))
        exp, _, _ = bftest.expected_after(self.pre, site.views["fay"])
        self.assertEqual(got, exp, bftest.diff(exp, got))
        self.assertIn(self.fifo, r.stderr)
        self.assertIn(self.dev, r.stderr)
        # verify reads the archive too
        try:
            r = bd.doveadm(site.dc, "backfill", "verify", "-u", "fay", fmt="json", timeout=60)
        except subprocess.TimeoutExpired:
            self.fail("doveadm backfill verify hung on a FIFO or device")
        self.assertIn(self.fifo, r.stderr)
        row = json.loads(r.stdout)[0]
        self.assertEqual((row["result"], row["missing"], row["symlinks"]),
                         ("symlinks", "0", "2"), (row, r.stderr))


class MergeSymlinkInodeCollision(bftest.SiteCase):
    """A symlink in cur/ to a file on another file system (the live mail
    volume: archive and live mail are separate file systems in
    production) whose inode number one of the folder's own message files
    also has.  A check that compared only inode numbers took it for one of
    the folder's files and merged vic's message into eve's INBOX, and
    verify said ok.  Two tmpfs here, whose inode numbers overlap."""

    SECRET = (b"From: vic@example.com\r\nTo: vic@example.com\r\n"
              b"Subject: VIC-SECRET-4711\r\nMessage-ID: <secret@example.com>\r\n"
              b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nvic's private mail\r\n")

    @classmethod
    def build(cls, site):
        cls.mount_tmpfs(site.archive_root, "64m")
        other = os.path.join(site.base, "otherfs")
        cls.mount_tmpfs(other, "64m")
        os.chmod(other, 0o755)
        g = mg.Generator(86)
        s = mg.Scenario()
        inbox = mg.Folder("INBOX", 1300000001)
        for i in range(20):
            t = 1500000000 + i * 60
            inbox.msgs.append(mg.Msg(g.message(t), set(), t))
        s.archive = [inbox]
        s.live = [mg.Folder("INBOX", 1700000001)]
        site.add_user("eve", s)
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("eve")
        cur = os.path.join(site.archive_root, "eve", "Maildir", "cur")
        inodes = {os.stat(os.path.join(cur, n)).st_ino for n in os.listdir(cur)}
        target = None
        for i in range(100000):
            p = os.path.join(other, "f%d" % i)
            with open(p, "wb") as f:
                f.write(cls.SECRET)
            if os.stat(p).st_ino in inodes:
                target = p
                break
        assert target, "no inode number shared across the two file systems"
        os.chmod(target, 0o644)
        cls.link = os.path.join(cur, "1600000000.M1P1.old-mx,S=%d:2,S" % len(cls.SECRET))
        os.symlink(target, cls.link)

    def leaked(self):
        live = os.path.join(self.site.base, "live", "eve", "Maildir")
        found = []
        for root, _, names in os.walk(live):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    if b"VIC-SECRET-4711" in f.read():
                        found.append(n)
        return found

    def test_symlink_with_a_shared_inode_number_skipped(self):
        site = self.site
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "eve")
        self.assertEqual(bd.by_user(rows)["eve"]["result"], "done", r.stderr)
        self.assertEqual(self.leaked(), [], "vic's message merged into eve's mailbox")
        got = bftest.multiset(site.dc.snapshot("eve"))
        exp, _, _ = bftest.expected_after(self.pre, site.views["eve"])
        self.assertEqual(got, exp, bftest.diff(exp, got))
        self.assertIn("a symlink is never followed: %s" % self.link, r.stderr)
        # verify does not read it either, and counts it
        rows, r = bd.doveadm_json(site.dc, "backfill", "verify", "-u", "eve", ok=(1,))
        row = bd.by_user(rows)["eve"]
        self.assertEqual((row["result"], row["missing"], row["symlinks"]),
                         ("symlinks", "0", "1"), (row, r.stderr))
        self.assertIn("%s is a symlink: not read, not verified" % self.link, r.stderr)


class MergeRestoredElsewhere(bftest.SiteCase):
    """An operator restored users' (or a domain's: backfill_archive =
    maildir:/srv/restore/%d/%n/Maildir) directories to another disk.
    Linked in below the fixed part of backfill_archive, each is refused
    like a planted link (it cannot be told from one), and the log line
    says to bind-mount it instead; bind-mounted, it is merged exactly."""

    @classmethod
    def build(cls, site):
        site.add_user("dan", mg.standard_scenario(87))
        site.add_user("deb", mg.standard_scenario(88))
        site.start(plugin_on=False)
        cls.pre = {u: site.dc.snapshot(u) for u in ("dan", "deb")}
        disk2 = os.path.join(site.base, "disk2")
        os.makedirs(disk2)
        for user in ("dan", "deb"):
            shutil.move(os.path.join(site.archive_root, user), os.path.join(disk2, user))
        cls.dan_link = os.path.join(site.archive_root, "dan")
        os.symlink(os.path.join(disk2, "dan"), cls.dan_link)
        deb = os.path.join(site.archive_root, "deb")
        os.makedirs(deb)
        subprocess.run(["mount", "--bind", os.path.join(disk2, "deb"), deb], check=True)
        cls._mounts = [deb]

    def test_linked_refused_with_the_remedy(self):
        site = self.site
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "dan", ok=(1,))
        self.assertEqual(bftest.multiset(site.dc.snapshot("dan")),
                         bftest.multiset(self.pre["dan"]))
        self.assertIn("archive path %s/Maildir resolves to" % self.dan_link, r.stderr)
        self.assertIn("must be bind-mounted there, a symlink is never followed", r.stderr)

    def test_bind_mounted_merged(self):
        site = self.site
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "deb")
        self.assertEqual(bd.by_user(rows)["deb"]["result"], "done", r.stderr)
        got = bftest.multiset(site.dc.snapshot("deb"))
        exp, _, _ = bftest.expected_after(self.pre["deb"], site.views["deb"])
        self.assertEqual(got, exp, bftest.diff(exp, got))


if __name__ == "__main__":
    unittest.main()
