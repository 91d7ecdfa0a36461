"""The conf.d samples as shipped, against the installed Dovecot, and
Dovecot 2.4's declared settings.

conf.d/90-backfill.conf (2.3) and conf.d/90-backfill-2.4.conf (2.4), each
with the plugin-loading file it includes: commented out they change
nothing; enabled with the sed command their header documents, doveconf
accepts them and shows the plugin loaded and backfill_archive set.  On 2.4,
doveconf (through libbackfill_settings.so) lists every backfill setting
with its default and refuses a value the plugin could not use; the
backfill_* settings are in backfill-2.4.conf (/etc/dovecot/backfill.conf),
read only through the plugin-loading file, so that an enabled
90-backfill.conf left by "apt remove" (the plugin-loading file and the
settings module gone with the package) is still a valid configuration.
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import bftest

dv = bftest.dv
CONF_D = os.path.join(bftest.SRC, "conf.d")
PLUGINS_PATH = "/usr/share/dovecot-backfill/backfill-plugins.conf"
# Where the 2.4 plugin-loading file reads the backfill_* settings from
# (meson substitutes the option dovecot_confdir).
SETTINGS_INCLUDE = "@DOVECOT_CONFDIR@/backfill.conf"
SETTINGS = ("backfill_archive", "backfill_state", "backfill_login_budget",
            "backfill_confirm_timeout", "backfill_max_parallel", "backfill_keyword",
            "backfill_dedup", "backfill_pop3_hide", "backfill_secret_file",
            "backfill_imap_uids", "backfill_imap_uid_margin")


def enable(text):
    """What the sample's documented sed command does."""
    out, inside = [], False
    for line in text.splitlines(True):
        if line.startswith("## BEGIN enable backfill"):
            inside = True
        elif line.startswith("## END enable backfill"):
            inside = False
        elif inside and re.match(r"#[^#]", line):
            line = line[1:]
        out.append(line)
    return "".join(out)


class ConfSamples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        bftest.require_root()
        cls.plugin_dir = bftest.plugin_dir()
        suffix = "-2.4" if dv.IS_24 else ""
        cls.sample = os.path.join(CONF_D, "90-backfill%s.conf" % suffix)
        cls.plugins = os.path.join(CONF_D, "backfill-plugins%s.conf" % suffix)
        cls.dir = tempfile.mkdtemp(prefix="bf-conf-")
        os.chmod(cls.dir, 0o755)
        if dv.IS_24:
            # The plugin-loading file as meson configures it, reading the
            # tree's backfill-2.4.conf instead of /etc/dovecot/backfill.conf.
            with open(cls.plugins) as f:
                text = f.read()
            if SETTINGS_INCLUDE not in text:
                raise AssertionError("%s does not include %s" % (cls.plugins, SETTINGS_INCLUDE))
            cls.plugins = os.path.join(cls.dir, "backfill-plugins.conf")
            with open(cls.plugins, "w") as f:
                f.write(text.replace(SETTINGS_INCLUDE,
                                     os.path.join(CONF_D, "backfill-2.4.conf")))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def doveconf(self, body, *args):
        """doveconf on a config of the instance's basics plus body."""
        conf = os.path.join(self.dir, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(dv.conf_head())
            f.write("base_dir = %s/run\nstate_dir = %s/state\n" % (self.dir, self.dir))
            f.write("mail_plugin_dir = %s\n" % self.plugin_dir)
            f.write(body)
        cmd = dv.in_mount_ns(["doveconf", "-c", conf] + list(args),
                             dv.settings_module_mounts(self.plugin_dir))
        return subprocess.run(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=60)

    def doveconf_without_module(self, body, *args):
        """doveconf as after "apt remove": no libbackfill_settings.so."""
        conf = os.path.join(self.dir, "removed.conf")
        with open(conf, "w") as f:
            f.write(dv.conf_head())
            f.write("base_dir = %s/run\nstate_dir = %s/state\n" % (self.dir, self.dir))
            f.write(body)
        return subprocess.run(["doveconf", "-c", conf] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=60)

    def sample_text(self, enabled, plugins=None):
        with open(self.sample) as f:
            text = f.read()
        if enabled:
            text = enable(text)
        # the package's path of the plugin-loading file: the tree's copy
        return text.replace(PLUGINS_PATH, plugins or self.plugins)

    def test_as_installed_changes_nothing(self):
        bare = self.doveconf("", "-n")
        self.assertEqual(bare.returncode, 0, bare.stdout)
        r = self.doveconf(self.sample_text(False), "-n")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stdout.splitlines()[4:], bare.stdout.splitlines()[4:])
        self.assertNotRegex(r.stdout, r"(?m)^\s*(backfill_\w+ =|backfill = yes|"
                                      r"mail_plugins = .*backfill)")

    def test_enabled_loads_the_plugin(self):
        r = self.doveconf(self.sample_text(True), "-n")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"backfill_archive = maildir:/srv/restore/")
        for proto in ("imap", "pop3", "lmtp"):
            block = re.search(r"(?ms)^protocol %s \{\n(.*?)^\}" % proto, r.stdout)
            self.assertIsNotNone(block, r.stdout)
            self.assertRegex(block.group(1), r"mail_plugins.*backfill|backfill = yes")
        self.assertIn("pop3_deleted_flag = $POP3Deleted", r.stdout)
        if dv.IS_24:
            self.assertIn("%{user | domain}/%{user | username}", r.stdout)
            self.assertNotRegex(r.stdout, r"(?m)^plugin \{")

    def test_enabled_then_package_removed_still_valid(self):
        """apt remove keeps the enabled 90-backfill.conf (and backfill.conf)
        but removes the plugin-loading file and the settings module: the
        configuration must stay valid, without the plugin and without any
        backfill_* setting (2.4), the POP3 settings kept."""
        if dv.IS_24 and os.path.exists(os.path.join(dv.SETTINGS_MODULE_DIR,
                                                    "libbackfill_settings.so")):
            self.skipTest("a libbackfill_settings.so is installed in Dovecot's "
                          "settings module dir: removal cannot be simulated")
        gone = os.path.join(self.dir, "removed-with-the-package.conf")
        r = self.doveconf_without_module(self.sample_text(True, plugins=gone), "-n")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertNotRegex(r.stdout, r"(?m)^\s*(backfill = yes|mail_plugins = .*backfill)")
        if dv.IS_24:
            # 2.3 keeps its plugin {} settings: unknown ones are harmless there.
            self.assertNotRegex(r.stdout, r"(?m)^\s*backfill_\w+ =")
        self.assertRegex(r.stdout, r"(?m)^mail_access_groups = backfill$")
        self.assertIn("pop3_deleted_flag = $POP3Deleted", r.stdout)

    def test_declared_settings_listed_with_defaults(self):
        if not dv.IS_24:
            self.skipTest("Dovecot 2.3 has no declared plugin settings")
        r = self.doveconf("", "-a")
        self.assertEqual(r.returncode, 0, r.stdout)
        got = dict(re.findall(r"(?m)^(backfill_\w+) = ?(.*)$", r.stdout))
        self.assertEqual(sorted(got), sorted(SETTINGS))
        self.assertEqual(got["backfill_login_budget"].replace(" ", ""), "300ms")
        self.assertEqual(got["backfill_confirm_timeout"].replace(" ", ""), "2secs")
        self.assertEqual(got["backfill_max_parallel"], "4")
        self.assertEqual(got["backfill_keyword"], "$Backfilled")
        self.assertEqual(got["backfill_dedup"], "user")
        self.assertEqual(got["backfill_pop3_hide"], "seen")
        self.assertEqual(got["backfill_imap_uids"], "auto")
        self.assertEqual(got["backfill_imap_uid_margin"], "100000")
        self.assertEqual(got["backfill_state"], "sqlite:/var/lib/backfill/state.db")
        # -n shows only what the operator set
        r = self.doveconf("backfill_dedup = mailbox\n", "-n")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(re.findall(r"(?m)^backfill_\w+", r.stdout), ["backfill_dedup"])

    def test_bad_values_refused_by_doveconf(self):
        if not dv.IS_24:
            self.skipTest("Dovecot 2.3 cannot refuse plugin {} values: "
                          "the plugin logs them at login and takes the default")
        for line, why in (("backfill_login_budget = 0", "at least 1ms"),
                          ("backfill_login_budget = 300", "missing units"),
                          ("backfill_confirm_timeout = 0", "at least 1ms"),
                          ("backfill_confirm_timeout = 2", "missing units"),
                          ("backfill_max_parallel = 0", "1..100000"),
                          ("backfill_dedup = sometimes", "Invalid value"),
                          ("backfill_pop3_hide = maybe", "Invalid value"),
                          ("backfill_imap_uids = sometimes", "Invalid value"),
                          ("backfill_imap_uid_margin = 1073741825", "0..1073741824")):
            r = self.doveconf(line + "\n", "-n")
            self.assertNotEqual(r.returncode, 0, line)
            name = line.split()[0]
            self.assertRegex(r.stdout, re.escape(name) + ".*" + re.escape(why))


if __name__ == "__main__":
    unittest.main(verbosity=2)
