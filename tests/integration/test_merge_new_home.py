"""A brand-new account: the user's home does not exist yet at the first
login (Dovecot makes homes lazily, with the first mailbox).  The merge
must make it the way Dovecot would and merge in that login, not log an
error and leave the user for later (found by the package test: every new
account's first login logged "opening archive: <home>: No such file or
directory")."""
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402


class NewHome(bftest.SiteCase):

    @classmethod
    def build(cls, site):
        cls.view = site.add_user("newbie", mg.bulk_scenario(5, 40, 0, 0))
        home = site.dc.users["newbie"][1]
        shutil.rmtree(home)
        site.start()

    def test_merged_at_first_login(self):
        site = self.site
        home = site.dc.users["newbie"][1]
        self.assertFalse(os.path.exists(home))
        site.wait_merged("newbie")
        errors = [line for line in site.dc.log_lines(r"\(newbie\)")
                  if "Error:" in line or "Panic:" in line]
        self.assertEqual(errors, [])
        self.assertTrue(os.path.isdir(home))
        snap = site.dc.snapshot("newbie")
        got = sum(len(box[1]) for box in snap.values())
        self.assertEqual(got, 40, snap.keys())


if __name__ == "__main__":
    unittest.main(verbosity=2)
