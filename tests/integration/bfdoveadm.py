"""Running `doveadm backfill ...` against a test's private Dovecot.

doveadm loads plugins only from its compiled-in directory
(/usr/lib/dovecot/modules/doveadm), so each call runs in a private mount
namespace (`unshare -m`) where the build's doveadm-plugin/doveadm-modules
directory (holding only lib95_doveadm_backfill_plugin.so) is bind-mounted
over it.
Nothing outside that namespace sees the mount.
"""
import json
import os
import re
import subprocess
import unittest

import bftest

DOVEADM_MODULE_DIR = bftest.dv.DOVEADM_MODULE_DIR


def module_dir():
    d = bftest.dv.doveadm_modules_dir(bftest.plugin_dir())
    if not os.path.exists(os.path.join(d, "lib95_doveadm_backfill_plugin.so")):
        raise unittest.SkipTest("lib95_doveadm_backfill_plugin.so not built")
    if not os.path.isdir(DOVEADM_MODULE_DIR):
        raise unittest.SkipTest("%s missing" % DOVEADM_MODULE_DIR)
    return d


def doveadm_argv(dc, *args, fmt=None):
    """The command line that runs doveadm with our module (and, on 2.4,
    our settings module) against dc's config.  Built right before the
    process starts: it waits, as dc's own clients do, until Dovecot's auth
    sees a passwd-file changed within the second (else a run right after
    set_user() could get the user's old userdb fields)."""
    dc._passwd_settle()
    cmd = ["-f", fmt] if fmt else []
    # -o plugin/NAME=VALUE: 2.4 has no plugin {} section, NAME is top level
    cmd += [a[len("plugin/"):] if bftest.dv.IS_24 and a.startswith("plugin/")
            else a for a in args]
    return bftest.dv.doveadm_argv(dc.conf_path, bftest.plugin_dir(), cmd,
                                  modules=module_dir())


# doveadm backfill run -p's workers report through a pipe to the parent: a
# write of that kind that fails went to a descriptor that is not the pipe
# (before the fix: stdin, in every run without -p)
STRAY_PIPE_WRITE = re.compile(r"write\((?:progress|result) pipe\) failed")


def stdin_readonly():
    """A stdin doveadm cannot write to, as cron or `< /dev/null` give it
    (subprocess.DEVNULL opens /dev/null read-write, where a stray write to
    fd 0 succeeds unseen)."""
    return open(os.devnull, "rb")


def check_no_stray_write(text, what="doveadm"):
    m = STRAY_PIPE_WRITE.search(text or "")
    if m:
        line = text[text.rfind("\n", 0, m.start()) + 1:].split("\n", 1)[0]
        raise AssertionError("%s wrote to a descriptor that is not its pipe: %s"
                             % (what, line))


def check_log_no_stray_write(dc):
    """The instance's log (doveadm logs there as well as to stderr)."""
    if os.path.exists(dc.log_path):
        with open(dc.log_path, errors="replace") as f:
            check_no_stray_write(f.read(), dc.log_path)


def doveadm(dc, *args, fmt=None, timeout=600, env=None):
    """Runs doveadm with our module; returns CompletedProcess (text).
    Fails the test if doveadm logged a write to a pipe that is not one."""
    with stdin_readonly() as stdin:
        r = subprocess.run(doveadm_argv(dc, *args, fmt=fmt), stdin=stdin,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout, env=dc.sanitizer_env(env))
    check_no_stray_write(r.stderr)
    return r


def doveadm_json(dc, *args, ok=(0,), **kw):
    """Runs with -f json; returns (rows, CompletedProcess)."""
    r = doveadm(dc, *args, fmt="json", **kw)
    if r.returncode not in ok:
        raise AssertionError("doveadm %s: exit %d\n%s\n%s" % (
            " ".join(args), r.returncode, r.stdout, r.stderr))
    out = r.stdout.strip()
    rows = json.loads(out) if out else []
    return rows, r


def by_user(rows):
    return {row["username"]: row for row in rows}


def use_full_usernames(site):
    """user@domain users (status --by-domain): the test instance's
    passwd-file lookups and the archive path use the whole name instead of
    its local part."""
    site.dc.plugin["backfill_archive"] = "maildir:%s/%%Lu/Maildir" % site.archive_root
    site.dc.full_usernames = True
