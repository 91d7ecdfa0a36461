"""Shared set-up of the backfillctl accounts tests: an incident scenario
with real password hashes (doveadm pw), the command run in a temp dir, a
private auth-only Dovecot reading the merged passwd-file, postmap on the
merged map.

meson passes BACKFILLCTL (the built binary); run by hand:
    BACKFILLCTL=build/backfillctl/backfillctl /usr/bin/python3 tests/accounts/test_accounts.py
BF_KEEP_TMP=1 keeps the temp dirs.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("BACKFILL_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
import dovecot  # noqa: E402  (the config spelling of the installed Dovecot)

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"

EX = "example.com"
# the value of an extra field whose name says it is a secret
EXTRA_SECRET = "SuperSecretValue9"
OTHER = "other.org"

# user -> plaintext passwords on the old and the new server (None: no
# account there).  The comments say which rule each one exercises.
PASSWORDS = {
    "alice": ("alice-old-pw", "alice-old-pw"),   # untouched: same hash
    "bob": ("bob-old-pw", "bob-new-pw"),         # reconfigured
    "carol": ("carol-old-pw", None),             # not recreated: restored
    "dave": ("dave-old-pw", None),               # now an alias: conflict
    "frank": ("frank-pw", "frank-pw"),           # identical line
    "gina": ("gina-old-pw", "gina-old-pw"),      # untouched, settings differ
    "sales": (None, "sales-new-pw"),             # new account, old alias
    "henry": (None, "henry-new-pw"),             # added after the incident
    "erin@other.org": ("erin-old-pw", None),     # other domain, restored
}


def backfillctl():
    exe = os.environ.get("BACKFILLCTL")
    if not exe:
        for cand in ("build-accounts", "build"):
            p = os.path.join(SRC, cand, "backfillctl", "backfillctl")
            if os.path.exists(p):
                exe = p
                break
    if not exe or not os.path.exists(exe):
        raise unittest.SkipTest("backfillctl not built (set BACKFILLCTL)")
    return os.path.abspath(exe)


def address(user):
    return user if "@" in user else "%s@%s" % (user, EX)


def hash_password(pw):
    r = subprocess.run([DOVEADM, "-O", "pw", "-s", "SHA512-CRYPT",
                        "-p", pw], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       check=True)
    return r.stdout.decode().strip()


class Scenario:
    """The incident: old and new passwd-files and virtual maps in a temp dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bf-accounts-")
        os.chmod(self.dir, 0o755)
        self.hashes = {}  # (user, "old"|"new") -> password field
        for user, (old, new) in PASSWORDS.items():
            if old is not None:
                self.hashes[(user, "old")] = hash_password(old)
            if new is not None:
                self.hashes[(user, "new")] = (
                    self.hashes[(user, "old")] if new == old else hash_password(new))
        h = lambda u, side: self.hashes[(u, side)]  # noqa: E731
        self.old_passwd = self.write("old.passwd", "".join([
            "# old server, restored from the backup\n",
            "alice@example.com:%s:8:8::/srv/old/example.com/alice::userdb_quota_rule=*:storage=1G\n" % h("alice", "old"),
            "# Bob is in accounting\n",
            "bob@example.com:%s:8:8:Bob:/srv/old/example.com/bob:/bin/false:userdb_quota_rule=*:storage=2G allow_nets=192.0.2.0/24 userdb_master_pass=%s\n" % (h("bob", "old"), EXTRA_SECRET),
            "carol@example.com:%s:8:8:Carol:/srv/old/example.com/carol::userdb_quota_rule=*:storage=3G\n" % h("carol", "old"),
            "dave@example.com:%s:8:8::/srv/old/example.com/dave::\n" % h("dave", "old"),
            "frank@example.com:%s:8:8::/srv/mail/example.com/frank::\n" % h("frank", "old"),
            "gina@example.com:%s:8:8:Gina G:/srv/old/example.com/gina:/bin/false:userdb_quota_rule=*:storage=3G userdb_mail=mdbox:~/mdbox\n" % h("gina", "old"),
            "\n",
            "erin@other.org:%s:8:8::/srv/old/other.org/erin::\n" % h("erin@other.org", "old"),
        ]))
        self.new_passwd = self.write("new.passwd", "".join([
            "alice@example.com:%s:8:8::/srv/new/example.com/alice::\n" % h("alice", "new"),
            "bob@example.com:%s:8:8::/srv/new/example.com/bob::\n" % h("bob", "new"),
            "frank@example.com:%s:8:8::/srv/mail/example.com/frank::\n" % h("frank", "new"),
            "gina@example.com:%s:8:8:Gina:/srv/new/example.com/gina::userdb_quota_rule=*:storage=9G userdb_acl_groups=staff\n" % h("gina", "new"),
            "sales@example.com:%s:8:8::/srv/new/example.com/sales::\n" % h("sales", "new"),
            "henry@example.com:%s:8:8::/srv/new/example.com/henry::\n" % h("henry", "new"),
        ]))
        # Dovecot's auth process reads the passwd-file as user dovecot,
        # as it reads /etc/dovecot/users on Debian (root:dovecot 0640).
        for p in (self.new_passwd,):
            shutil.chown(p, "root", "dovecot")
            os.chmod(p, 0o640)
        self.old_aliases = self.write("old.virtual", "".join([
            "# old aliases\n",
            "sales@example.com   alice@example.com,\n",
            "    bob@example.com\n",
            "info@example.com carol@example.com\n",
            "team@example.com  alice@example.com, ghost@example.com\n",
            "abuse@example.com alice@example.com, abuse-desk@elsewhere.net\n",
            "same@example.com frank@example.com, alice@example.com\n",
            "postmaster@other.org erin@other.org\n",
        ]))
        self.new_aliases = self.write("new.virtual", "".join([
            "info@example.com alice@example.com\n",
            "dave@example.com bob@example.com\n",
            "news@example.com nobody@example.com\n",
            "same@example.com alice@example.com,frank@example.com\n",
        ]))
        self.out = os.path.join(self.dir, "out")

    def write(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def run(self, *extra, out=None, old_passwd=None, new_passwd=None,
            old_aliases=None, new_aliases=None, wrap=()):
        """wrap: a command line to run backfillctl under (unshare ...)."""
        args = list(wrap) + [backfillctl(), "accounts",
                "--old-passwd", old_passwd or self.old_passwd,
                "--new-passwd", new_passwd or self.new_passwd]
        # None: the scenario's map; "": no map at all
        old_aliases = self.old_aliases if old_aliases is None else old_aliases
        new_aliases = self.new_aliases if new_aliases is None else new_aliases
        if old_aliases:
            args += ["--old-aliases", old_aliases]
        if new_aliases:
            args += ["--new-aliases", new_aliases]
        args += ["--out", out or self.out] + list(extra)
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

    def secrets(self):
        """Every password field of the inputs and every plaintext password."""
        out = set(self.hashes.values()) | {EXTRA_SECRET}
        for old, new in PASSWORDS.values():
            out.update(p for p in (old, new) if p)
        return out

    def cleanup(self):
        if os.environ.get("BF_KEEP_TMP"):
            print("kept", self.dir)
            return
        shutil.rmtree(self.dir, ignore_errors=True)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def text_figures(report):
    """{title: number} of a text report's Summary."""
    out = {}
    m = re.search(r"^Summary\n((?:  .*\n)+)", report, re.M)
    for line in m.group(1).splitlines():
        title, n = line.strip().rsplit(None, 1)
        out[title.strip()] = int(n)
    return out


class AuthDovecot:
    """A private Dovecot with no protocols: only the auth service, reading
    one passwd-file, for `doveadm auth test` and `doveadm user`.  No port
    is opened; everything lives in its temp dir."""

    def __init__(self, passwd_path):
        self.dir = tempfile.mkdtemp(prefix="bf-accounts-dc-")
        os.chmod(self.dir, 0o755)
        self.base = os.path.join(self.dir, "run")
        self.log = os.path.join(self.dir, "dovecot.log")
        os.makedirs(self.base)
        os.makedirs(os.path.join(self.dir, "state"))
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(dovecot.conf_head() + """# generated by tests/accounts/acctest.py
base_dir = {d}/run
state_dir = {d}/state
log_path = {log}
instance_name = bf-acc-{name}
ssl = no
auth_mechanisms = plain
auth_failure_delay = 0
first_valid_uid = 8
first_valid_gid = 8
default_internal_user = dovecot
default_login_user = dovenull
""".format(d=self.dir, log=self.log, name=os.path.basename(self.dir)) +
                dovecot.conf_no_protocols() + dovecot.conf_cleartext_auth() +
                dovecot.conf_passwd_file(passwd_path, lower="user"))
        self.pid = None

    def __enter__(self):
        # The daemonized master keeps the descriptors it was given: a pipe
        # would never reach EOF, so its output goes to a file.
        out_path = os.path.join(self.dir, "startup.out")
        with open(out_path, "wb") as out:
            r = subprocess.run([DOVECOT, "-c", self.conf], stdout=out,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               timeout=60)
        if r.returncode != 0:
            raise AssertionError("dovecot failed to start: %s\n%s" % (
                read(out_path), self.log_text()))
        pidfile = os.path.join(self.base, "master.pid")
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(pidfile) and os.path.exists(
                    os.path.join(self.base, "auth-client")):
                with open(pidfile) as f:
                    self.pid = int(f.read().strip())
                return self
            time.sleep(0.05)
        raise AssertionError("dovecot did not come up:\n" + self.log_text())

    def __exit__(self, *exc):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.time() + 10
                while time.time() < deadline and os.path.exists(
                        "/proc/%d" % self.pid):
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
        if not os.environ.get("BF_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            return read(self.log)
        except OSError:
            return ""

    def auth_ok(self, user, password):
        r = subprocess.run([DOVEADM, "-c", self.conf, "auth", "test", "-x",
                            "service=imap", user, password],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return r.returncode == 0

    def userdb(self, user):
        """{field: value} of `doveadm user`, or None if unknown."""
        r = subprocess.run([DOVEADM, "-c", self.conf, "user", user],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if r.returncode != 0:
            return None
        out = {}
        for line in r.stdout.decode().splitlines()[1:]:
            k, _, v = line.partition("\t")
            out[k] = v
        return out


class Postmap:
    """postmap on a copy of a map source, with a private (empty) config dir."""

    def __init__(self, source):
        self.dir = tempfile.mkdtemp(prefix="bf-accounts-pm-")
        open(os.path.join(self.dir, "main.cf"), "w").close()
        self.map = os.path.join(self.dir, "virtual")
        shutil.copyfile(source, self.map)
        r = subprocess.run([POSTMAP, "-c", self.dir, "hash:" + self.map],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.output = r.stdout.decode(errors="replace")
        if r.returncode != 0:
            raise AssertionError("postmap rejected the merged map: " + self.output)

    def query(self, key):
        r = subprocess.run([POSTMAP, "-c", self.dir, "-q", key, "hash:" + self.map],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if r.returncode == 1:
            return None
        if r.returncode != 0:
            raise AssertionError("postmap -q %s: %s" % (key, r.stderr.decode()))
        return r.stdout.decode().strip()

    def targets(self, key):
        v = self.query(key)
        return None if v is None else sorted(t for t in re.split(r"[\s,]+", v) if t)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def require_root():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root: starts a private Dovecot")
