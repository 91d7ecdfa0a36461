"""mdbox alternate storage (backfill_archive = mdbox:...:ALT=...) holds to
the symlink rule of the archive's own storage: nothing outside the
user's own archive is ever read.

Dovecot reads a storage file the map index names from ALT/storage/ when
storage/ has none, so an old server's archive with its m.* files moved
to ALT (doveadm altmove) is merged from there.  Three restores that
point into mo's (another user's) ALT storage, all inside the ALT root:
alf's ALT holds an m.* file that is a symlink to mo's, abe's ALT
storage/ is a relative symlink to mo's, and ari's whole ALT directory
is one.  Merging them must read none of mo's mail: alf's and abe's
folders are skipped and logged with the link's path (mdbox storage
files hold messages of every folder), ari is refused with the line
that says to bind-mount instead.  ada's clean ALT archive is merged
exactly (ALT storage is really read).
"""
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
import maildir_gen as mg  # noqa: E402
import dovecot as dv  # noqa: E402
from test_merge_mdbox import build_mdbox_archive  # noqa: E402


def move_to_alt(home, alt):
    """What doveadm altmove does to every message: the m.* files go from
    storage/ to ALT/storage/, the map index stays in storage/."""
    storage = os.path.join(home, "mdbox", "storage")
    alt_storage = os.path.join(alt, "storage")
    os.makedirs(alt_storage)
    moved = 0
    for name in os.listdir(storage):
        if name.startswith("m."):
            shutil.move(os.path.join(storage, name), os.path.join(alt_storage, name))
            moved += 1
    assert moved, "no m.* storage file in %s" % storage
    mg.freeze(alt)


class MergeMdboxAlt(bftest.SiteCase):

    USERS = ("ada", "alf", "abe", "ari")

    @classmethod
    def build(cls, site):
        base = site.base
        archive = os.path.join(base, "archive")
        cls.alt_root = os.path.join(base, "alt")
        os.makedirs(cls.alt_root)
        cls.mo = build_mdbox_archive(os.path.join(archive, "mo"), "mo",
                                     mg.standard_scenario(64))
        move_to_alt(os.path.join(archive, "mo"), os.path.join(cls.alt_root, "mo"))
        scen = mg.standard_scenario(65)
        tmpl = os.path.join(base, "template")
        cls.view = build_mdbox_archive(tmpl, "tmpl", scen)
        for user in cls.USERS:
            home = os.path.join(archive, user)
            shutil.copytree(tmpl, home, symlinks=True)
            mg.freeze(home)
            move_to_alt(home, os.path.join(cls.alt_root, user))
            live_home = os.path.join(base, "live", user)
            mg.write_maildir(os.path.join(live_home, "Maildir"), scen.live, host="new-mx")
            dv.chown_tree(live_home)
            site.dc.add_user(user, home=live_home)
            site.views[user] = cls.view
        mo_storage = os.path.join(cls.alt_root, "mo", "storage")
        # alf: one storage file of its ALT is mo's
        alf_storage = os.path.join(cls.alt_root, "alf", "storage")
        name = sorted(n for n in os.listdir(alf_storage) if n.startswith("m."))[0]
        cls.file_link = os.path.join(alf_storage, name)
        os.unlink(cls.file_link)
        os.symlink(os.path.join(mo_storage, name), cls.file_link)
        # abe: its ALT storage/ is mo's
        cls.storage_link = os.path.join(cls.alt_root, "abe", "storage")
        shutil.rmtree(cls.storage_link)
        os.symlink("../mo/storage", cls.storage_link)
        # ari: its whole ALT directory is mo's
        cls.alt_link = os.path.join(cls.alt_root, "ari")
        shutil.rmtree(cls.alt_link)
        os.symlink("mo", cls.alt_link)
        site.start(plugin_on=False)
        cls.pre = {u: site.dc.snapshot(u) for u in cls.USERS}
        site.enable_plugin(
            backfill_pop3_hide="none",
            backfill_archive="mdbox:%s/%%Ln/mdbox:ALT=%s/%%Ln" % (archive, cls.alt_root))

    def got(self, user):
        return bftest.multiset(self.site.dc.snapshot(user))

    def assert_nothing_of_mo(self, user):
        mo = {m.fingerprint for m in self.mo.messages()}
        self.assertEqual([m for m in self.got(user) if m[1] in mo], [],
                         "mo's mail merged into %s's mailbox" % user)

    def test_clean_alt_merged(self):
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "run", "-u", "ada")
        self.assertEqual(bd.by_user(rows)["ada"]["result"], "done", r.stderr)
        # dbox's check of its dbox-alt-root symlink would write into the
        # archive: it is off for the archive
        self.assertNotIn("dbox-alt-root", r.stderr)
        self.assertNotIn("Error:", r.stderr)
        exp, _, _ = bftest.expected_after(self.pre["ada"], self.view, hide="none")
        got = self.got("ada")
        self.assertEqual(got, exp, bftest.diff(exp, got))
        rows, r = bd.doveadm_json(self.site.dc, "backfill", "verify", "-u", "ada")
        self.assertEqual(bd.by_user(rows)["ada"]["result"], "ok", r.stderr)

    def test_symlinked_alt_storage_file_skipped(self):
        site = self.site
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "alf", ok=(0, 1))
        self.assert_nothing_of_mo("alf")
        self.assertEqual(self.got("alf"), bftest.multiset(self.pre["alf"]))
        self.assertIn("(mdbox storage): skipped, a symlink is never followed: %s"
                      % self.file_link, r.stderr)
        rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "alf")
        self.assertIn("archive symlinks skipped (never followed)",
                      bd.by_user(rows)["alf"]["last_error"])
        rows, r = bd.doveadm_json(site.dc, "backfill", "verify", "-u", "alf", ok=(1,))
        self.assertEqual(bd.by_user(rows)["alf"]["result"], "symlinks", r.stderr)
        self.assertIn(self.file_link, r.stderr)
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])

    def test_symlinked_alt_storage_dir_skipped(self):
        site = self.site
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "abe", ok=(0, 1))
        self.assert_nothing_of_mo("abe")
        self.assertEqual(self.got("abe"), bftest.multiset(self.pre["abe"]))
        self.assertIn("(mdbox storage): skipped, a symlink is never followed: %s"
                      % self.storage_link, r.stderr)
        rows, r = bd.doveadm_json(site.dc, "backfill", "verify", "-u", "abe", ok=(1,))
        self.assertEqual(bd.by_user(rows)["abe"]["result"], "symlinks", r.stderr)
        self.assertIn(self.storage_link, r.stderr)

    def test_symlinked_alt_dir_refused(self):
        site = self.site
        rows, r = bd.doveadm_json(site.dc, "backfill", "run", "-u", "ari", ok=(1,))
        self.assert_nothing_of_mo("ari")
        self.assertEqual(self.got("ari"), bftest.multiset(self.pre["ari"]))
        self.assertIn("ALT storage: archive path %s resolves to" % self.alt_link, r.stderr)
        self.assertIn("a symlink is never followed below the archive root", r.stderr)
        self.assertIn("bind-mount", r.stderr)
        self.assertEqual(bd.by_user(rows)["ari"]["result"], "failed", rows)


if __name__ == "__main__":
    unittest.main(verbosity=2)
