"""An archive in mdbox format (brief: "any Dovecot mail format, typically a
read-only Maildir snapshot"; DOVECOT-NOTES.md, "What works" for mdbox).

The old server here really is a Dovecot with mail_location = mdbox: the
standard scenario's archive is APPENDed to it over IMAP (flags, keywords,
dates), what its users saw is recorded (IMAP and POP3 UIDL), then the tree
is frozen (root-owned, read-only) and merged into a Maildir live mailbox.
"""
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import dovecot as dv  # noqa: E402
import maildir_gen as mg  # noqa: E402

def build_mdbox_archive(home, user, scen):
    old = dv.Dovecot(name="old-mdbox", auto_mailboxes="no", username_chars="",
                     mail_location="mdbox:~/mdbox",
                     extra_conf="pop3_no_flag_updates = yes\n")
    os.makedirs(home, exist_ok=True)
    dv.chown_tree(home)
    old.add_user(user, home=home)
    old.start()
    try:
        c = old.imap(user)
        try:
            for folder in scen.archive:
                if folder.name != "INBOX":
                    c.create(dv._imap_quote(folder.name))
                    c.subscribe(dv._imap_quote(folder.name))
                for m in folder.msgs:
                    flags = [f for f in m.flags]
                    typ, data = c.append(dv._imap_quote(folder.name),
                                         "(" + " ".join(flags) + ")" if flags else None,
                                         __import__("imaplib").Time2Internaldate(m.date), m.raw)
                    assert typ == "OK", data
            # an expunged message leaves a UID gap, as on a real server
            c.select("INBOX")
            c.store("2", "+FLAGS", "(\\Deleted)")
            c.expunge()
        finally:
            c.logout()
        view = mg.OldView(old.snapshot(user), old.pop3_uidls(user))
        old.assert_log_clean()
    finally:
        old.stop()
        old.cleanup()
    mg.freeze(home)
    return view


class MergeMdbox(bftest.SiteCase):
    SITE = dict()

    @classmethod
    def build(cls, site):
        scen = mg.standard_scenario(61)
        base = site.base
        arch_home = os.path.join(base, "archive", "mona")
        view = build_mdbox_archive(arch_home, "mona", scen)
        cls.sum = dv.tree_checksum(arch_home)
        live_home = os.path.join(base, "live", "mona")
        mg.write_maildir(os.path.join(live_home, "Maildir"), scen.live, host="new-mx")
        dv.chown_tree(live_home)
        site.dc.add_user("mona", home=live_home,
                         extra="userdb_backfill_archive=mdbox:%s/archive/%%Ln/mdbox" % base)
        site.views["mona"] = view
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("mona")
        cls.pre_uidls = site.dc.pop3_uidls("mona")
        site.enable_plugin(backfill_pop3_hide="none")
        site.wait_merged("mona", timeout=60)
        cls.post = site.dc.snapshot("mona")
        cls.post_uidls = site.dc.pop3_uidls("mona")

    def test_result_flags_dates_folders(self):
        exp, _, _ = bftest.expected_after(self.pre, self.site.views["mona"], hide="none")
        got = bftest.multiset(self.post)
        self.assertEqual(got, exp, bftest.diff(exp, got))

    def test_pop3_uidls_of_old_server(self):
        old = {}
        for uidl, fp in self.site.views["mona"].uidls:
            old.setdefault(fp, set()).add(uidl)
        pre = set(self.pre_uidls)
        for uidl, fp in self.post_uidls:
            if (uidl, fp) not in pre:
                self.assertIn(uidl, old.get(fp, set()))
        names = [u for u, _ in self.post_uidls]
        self.assertEqual(len(names), len(set(names)))

    def test_archive_not_modified(self):
        self.assertEqual(dv.tree_checksum(os.path.join(self.site.base, "archive", "mona")), self.sum)


class MergeMdboxStorageLink(bftest.SiteCase):
    """Issue 15 item 2 for mdbox ("whatever the mail format"): max's
    restored mdbox has its storage/ directory replaced by a relative
    symlink to mo's (another user's archive, inside the archive root).
    Its folders are real, so the folder check lets them through; the
    map index copied from storage/ and the m.* files it names would be
    mo's.  Merging max must add none of mo's mail, skip and log the
    symlink with its path, and leave max's live mailbox as it was."""

    @classmethod
    def build(cls, site):
        base = site.base
        cls.mo = build_mdbox_archive(os.path.join(base, "archive", "mo"), "mo",
                                     mg.standard_scenario(62))
        scen = mg.standard_scenario(63)
        build_mdbox_archive(os.path.join(base, "archive", "max"), "max", scen)
        storage = os.path.join(base, "archive", "max", "mdbox", "storage")
        shutil.rmtree(storage)
        os.symlink("../../mo/mdbox/storage", storage)
        cls.link = storage
        live_home = os.path.join(base, "live", "max")
        mg.write_maildir(os.path.join(live_home, "Maildir"), scen.live, host="new-mx")
        dv.chown_tree(live_home)
        site.dc.add_user("max", home=live_home,
                         extra="userdb_backfill_archive=mdbox:%s/archive/%%Ln/mdbox" % base)
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("max")
        site.enable_plugin(backfill_pop3_hide="none")

    def test_symlinked_storage_not_read(self):
        site = self.site
        site.wait_merged("max", timeout=60)
        got = bftest.multiset(site.dc.snapshot("max"))
        mo = {m.fingerprint for m in self.mo.messages()}
        self.assertEqual([m for m in got if m[1] in mo], [],
                         "mo's mail merged into max's mailbox")
        self.assertEqual(got, bftest.multiset(self.pre))
        log = "\n".join(site.dc.log_lines(bftest.bf_log("max")))
        self.assertIn("a symlink is never followed: %s" % self.link, log)
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
