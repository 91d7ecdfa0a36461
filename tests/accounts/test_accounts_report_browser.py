"""A domain report of backfillctl accounts rendered by a real browser
(headless Chromium from Debian): the figures a domain administrator reads
are the right ones, the page is self-contained, and it renders.

BF_REPORT_SCREENSHOT=PATH keeps a copy of the screenshot to look at.
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import acctest as at  # noqa: E402
import chromium  # noqa: E402


# data-figure -> the text report's title, and the expected value for the
# scenario of acctest.py (plus one alias added below)
FIGURES = {
    "conflicts": ("Conflicts to decide", 5),
    "accounts-restored": ("Accounts restored from the old server", 1),
    "passwords-kept-new": ("Passwords kept from the new server", 1),
    "settings-restored": ("Old settings restored", 2),
    "accounts-added": ("Accounts added after the incident", 2),
    "accounts-unchanged": ("Accounts unchanged", 1),
    "aliases-restored": ("Aliases restored from the old server", 1),
    "aliases-added": ("Aliases added after the incident", 3),
    "aliases-unchanged": ("Aliases unchanged", 1),
}


class BrowserReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        at.require_root()
        at.backfillctl()
        if not chromium.available():
            raise unittest.SkipTest("chromium not installed (scripts/install-deps)")
        cls.sc = at.Scenario()
        with open(cls.sc.new_aliases, "a") as f:
            f.write("o&b@example.com alice@example.com\n")
        rc, out, err = cls.sc.run()
        assert rc == 1, err
        cls.page = os.path.join(cls.sc.out, "reports", "example.com.html")
        cls.text = at.read(os.path.join(cls.sc.out, "reports", "example.com.txt"))
        r = chromium.run("--dump-dom", "file://" + cls.page)
        cls.dom = r.stdout.decode("utf-8", "replace")
        cls.chromium_err = r.stderr.decode("utf-8", "replace")

    @classmethod
    def tearDownClass(cls):
        cls.sc.cleanup()

    def test_figures_in_the_rendered_page(self):
        self.assertIn("<h1>", self.dom, self.chromium_err[-2000:])
        shown = dict(re.findall(r'data-figure="([a-z-]+)">(\d+)<', self.dom))
        self.assertEqual(set(shown), set(FIGURES))
        text = at.text_figures(self.text)
        for fid, (title, expected) in FIGURES.items():
            self.assertEqual(int(shown[fid]), expected, fid)
            self.assertEqual(text[title], expected, title)
        self.assertIn("5 conflicts to decide.", self.dom)

    def test_conflicts_in_the_rendered_page(self):
        kinds = re.findall(r'<section class="conflict" data-kind="([a-z-]+)"', self.dom)
        self.assertEqual(sorted(kinds), sorted([
            "conflict-new-account-old-alias", "conflict-old-account-new-alias",
            "conflict-alias-targets", "conflict-alias-dangling",
            "conflict-alias-dangling"]))
        self.assertEqual(self.dom.count("To decide:"), 5)
        for addr in ("sales@example.com", "dave@example.com", "info@example.com",
                     "team@example.com", "news@example.com"):
            self.assertRegex(self.dom, r"<h3>\d\. [^<]*: <code>%s</code>" % re.escape(addr))
        # escaped, and shown as the address it is
        self.assertIn("<code>o&amp;b@example.com</code>", self.dom)
        self.assertEqual(self.dom.count('data-list="accounts-restored"'), 1)

    def test_self_contained_and_secret_free(self):
        html = at.read(self.page)
        for bad in ("<script", "<link", "src=", "href=", "url(", "@import",
                    "http://", "https://"):
            self.assertNotIn(bad, html.lower())
        for secret in self.sc.secrets():
            self.assertNotIn(secret, html)
            self.assertNotIn(secret, self.dom)

    def test_screenshot_renders(self):
        w, h, size, err = chromium.screenshot(self.page, 1100, 1800,
                                              keep=os.environ.get("BF_REPORT_SCREENSHOT"))
        self.assertEqual((w, h), (1100, 1800), err)
        self.assertGreater(size, 20000)  # not a blank page


if __name__ == "__main__":
    unittest.main(verbosity=2)
