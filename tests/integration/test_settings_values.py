"""Bad duration values in a user's settings (a userdb override, or the
plugin {} block on 2.3): logged with the setting's name and the default
used, and the user's mail still merged. A 0 is refused like any other bad
value: backfill_confirm_timeout = 0 would otherwise mean "wait the store's
own timeout" (10 s for SQLite) at every LMTP delivery, and a login budget
of 0 would still merge for a slice at every login.

On Dovecot 2.4 the declared settings refuse these values themselves
(test_conf_samples checks doveconf); the same userdb override gives the
user a session without backfill and an error naming the setting.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import dovecot as dv  # noqa: E402
import maildir_gen as mg  # noqa: E402

BAD = {
    "zora": ("userdb_backfill_login_budget=0 userdb_backfill_confirm_timeout=0",
             [r"backfill_login_budget=0: must be at least 1ms \(using 300ms\)",
              r"backfill_confirm_timeout=0: must be at least 1ms \(using 2000ms\)"]),
    "jude": ("userdb_backfill_login_budget=soon userdb_backfill_confirm_timeout=0s",
             [r"backfill_login_budget=soon: expected a duration .*\(using 300ms\)",
              r"backfill_confirm_timeout=0s: must be at least 1ms \(using 2000ms\)"]),
}


class SettingsValues(bftest.SiteCase):
    @classmethod
    def build(cls, site):
        for seed, (user, (extra, _)) in enumerate(sorted(BAD.items()), 91):
            site.add_user(user, mg.standard_scenario(seed), record=False, extra=extra)
        site.add_user("gwen", mg.standard_scenario(95), record=False,
                      extra="userdb_backfill_login_budget=250 "
                            "userdb_backfill_confirm_timeout=1500ms")
        site.start()

    def test_zero_and_junk_durations_logged_default_used(self):
        site = self.site
        for user, (_, patterns) in sorted(BAD.items()):
            if dv.IS_24:
                # The settings check refuses the override: the user is
                # served without backfill, and the error says so.
                site.dc.imap(user).logout()
                pattern = (r"imap\(%s\).*Error: backfill: settings: .*"
                           r"backfill_(login_budget|confirm_timeout).*"
                           r"\(no backfill for this user\)" % user)
                deadline = time.time() + 10
                while not site.dc.log_lines(pattern) and time.time() < deadline:
                    time.sleep(0.1)
                self.assertTrue(site.dc.log_lines(pattern), site.dc.log_tail())
                self.assertFalse(site.finished_lines(user))
                continue
            site.wait_merged(user)
            for pattern in patterns:
                self.assertTrue(site.dc.log_lines(pattern),
                                "%s: no line matching %r\n%s"
                                % (user, pattern, site.dc.log_tail()))

    def test_good_values_taken_silently(self):
        """A bare number is milliseconds on 2.3 (2.4 wants a unit); good
        values are not logged as errors."""
        site = self.site
        if dv.IS_24:
            self.skipTest("2.4 refuses a duration without a unit")
        site.wait_merged("gwen")
        self.assertFalse(site.dc.log_lines(r"backfill_\w+=.*gwen|gwen.*backfill_\w+="),
                         site.dc.log_tail())
        self.assertFalse(site.dc.log_lines(r"backfill_(login_budget|confirm_timeout)=(250|1500ms)"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
