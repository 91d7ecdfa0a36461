"""A private Dovecot instance for integration tests, benchmarks and demos.

Stdlib only, run by /usr/bin/python3 as root. Each instance lives in its own
temporary directory (config, base_dir, state_dir, logs, homes, passwd-file),
listens on 127.0.0.1 ports picked free at start, runs mail as the `mail`
user (uid/gid 8) and is stopped by the PID in base_dir/master.pid. Other
people run tests on the same machine at the same time: nothing here uses a
fixed port or a path outside the instance's directory.

    with Dovecot(plugin_dir=..., mail_plugins="backfill",
                 plugin={"backfill_archive": "maildir:/x/%Ln"}) as dc:
        dc.add_user("alice")
        imap = dc.imap("alice")
        ...
        dc.assert_log_clean()
"""
import datetime
import email.utils
import imaplib
import os
import poplib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fingerprint_ref  # noqa: E402

# poplib refuses lines over 2048 bytes; archived mail may have longer ones
poplib._MAXLINE = 1 << 20

MAIL_UID = 8
MAIL_GID = 8
PASSWORD = "secret"

# Tests started by meson run with a short PATH at times; these are where
# Debian puts Dovecot.
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"


def doveadm_modules_dir(plugin_dir):
    """The build's doveadm-modules directory (only our doveadm plugin in
    it, to bind-mount over doveadm's own module directory) beside the mail
    plugin's build directory: BUILD/dovecot-plugin gives
    BUILD/doveadm-plugin/doveadm-modules."""
    build = os.path.dirname(os.path.abspath(plugin_dir))
    return os.path.join(build, "doveadm-plugin", "doveadm-modules")


def _installed_version():
    """The installed Dovecot's version as a tuple: (2, 3, 19, 1), (2, 4, 1)."""
    try:
        out = subprocess.run([DOVECOT, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    m = re.match(r"(\d+(?:\.\d+)+)", out.decode(errors="replace"))
    return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)


VERSION = _installed_version()
# Dovecot 2.4 took a new configuration syntax (no plugin {} section, every
# setting declared, %{user | domain} variables, named passdbs, ...).  Tests
# say what they need once; the config writers here spell it for the
# installed release.
IS_24 = VERSION >= (2, 4)


def conf_head():
    """The lines every generated dovecot.conf starts with: 2.4 refuses a
    config whose first setting is not dovecot_config_version, and a
    storage without dovecot_storage_version."""
    if not IS_24:
        return ""
    v = ".".join(str(x) for x in VERSION[:3])
    return "dovecot_config_version = %s\ndovecot_storage_version = %s\n" % (v, v)


def conf_no_protocols():
    """A Dovecot serving no protocol at all (auth only)."""
    return "protocols =\n" if IS_24 else "protocols = none\n"


def conf_cleartext_auth():
    """Plaintext logins over the tests' unencrypted 127.0.0.1 listeners."""
    if IS_24:
        return "auth_allow_cleartext = yes\n"
    return "disable_plaintext_auth = no\n"


def conf_passwd_file(path, lower="username", plain=False):
    """passdb and userdb reading one passwd-file, users looked up by their
    name in lower case: lower="username" drops the domain (2.3's %Ln),
    "user" keeps it (%Lu).  plain: passwords stored as plain text."""
    if IS_24:
        fmt = ("%{user | username | lower}" if lower == "username"
               else "%{user | lower}")
        scheme = "  default_password_scheme = PLAIN\n" if plain else ""
        return """auth_username_format = {fmt}
passdb passwd-file {{
  passwd_file_path = {path}
{scheme}}}
userdb passwd-file {{
  passwd_file_path = {path}
}}
""".format(fmt=fmt, path=path, scheme=scheme)
    fmt = "%Ln" if lower == "username" else "%Lu"
    return """auth_username_format = {fmt}
passdb {{
  driver = passwd-file
  args = {scheme}username_format={fmt} {path}
}}
userdb {{
  driver = passwd-file
  args = username_format={fmt} {path}
}}
""".format(fmt=fmt, path=path, scheme="scheme=PLAIN " if plain else "")


# 2.3's %-variables and the 2.4 spelling of each (users, homes).
_VARS_24 = {"n": "user | username", "d": "user | domain", "u": "user",
            "h": "home"}


def vars_24(text):
    """2.3 variables (%n %d %u %h, %L for lower case) in 2.4 syntax:
    %Ln -> %{user | username | lower}.  Unchanged on 2.3."""
    if not IS_24:
        return text

    def one(m):
        v = _VARS_24[m.group(2)]
        return "%{" + v + (" | lower" if m.group(1) else "") + "}"
    return re.sub(r"%(L?)([nduh])", one, text)


# 2.3 mail location options and the 2.4 setting each became
_MAIL_OPTIONS_24 = {"LAYOUT": "mailbox_list_layout"}


def _userdb_mail_24(m):
    driver, path = m.group(1), m.group(2)
    path, *options = path.split(":")
    fields = ["userdb_mail_driver=%s" % driver, "userdb_mail_path=%s" % path]
    for opt in options:
        key, _, value = opt.partition("=")
        if key not in _MAIL_OPTIONS_24 or not value:
            raise ValueError("userdb_mail option %s has no 2.4 spelling here" % opt)
        fields.append("userdb_%s=%s" % (_MAIL_OPTIONS_24[key], value))
    return " ".join(fields)


def _passwd_extra(extra):
    """userdb extra fields of a passwd-file line in the installed release's
    syntax: 2.4 has no mail (location) field, a userdb sets mail_driver and
    mail_path instead; the fields are separated by spaces, so 2.4's
    %{user | username} is written without them."""
    if not IS_24:
        return extra
    extra = re.sub(r"\buserdb_mail=(\w+):(\S*)", _userdb_mail_24, extra)
    return vars_24(extra).replace(" | ", "|")


def _mail_plugins_24(m):
    indent, names = m.group(1), m.group(2).split()
    if not names:
        return ""
    return "%smail_plugins {\n%s%s}\n" % (
        indent, "".join("%s  %s = yes\n" % (indent, n) for n in names), indent)


def conf_24(text):
    """A dovecot.conf written in 2.3 syntax, as 2.4 wants it: the version
    header, no plugin {} section (its settings are declared at top level),
    mail_driver/mail_path for mail_location, mail_plugins as a boolean
    list, listen instead of address, 2.4 variables.  The tests and the
    demo write one config; this keeps them release-neutral."""
    text = re.sub(r"(?ms)^plugin \{\n(.*?)^\}\n",
                  lambda m: re.sub(r"(?m)^\s+", "", m.group(1)), text)
    text = re.sub(r"(?m)^disable_plaintext_auth = no$",
                  "auth_allow_cleartext = yes", text)
    text = re.sub(r"(?m)^mail_location = (\w+):(.*)$",
                  r"mail_driver = \1\nmail_path = \2", text)
    # the same lowercase hex UIDLs on both releases (%08Xu alone too)
    text = re.sub(r"%08X([uv])", lambda m: "%%{%s | hex(8)}" % (
        "uid" if m.group(1) == "u" else "uidvalidity"), text)
    text = re.sub(r"(?m)^(\s+)address = ", r"\1listen = ", text)
    text = re.sub(r"(?m)^(\s*)mail_plugins = \$mail_plugins *(.*)\n",
                  _mail_plugins_24, text)
    return conf_head() + vars_24(text)


SETTINGS_MODULE_DIR = "/usr/lib/dovecot/modules/settings"


def settings_module_mounts(plugin_dir):
    """[(build dir, Dovecot dir, "add")] for in_mount_ns, so that Dovecot
    2.4's config reader (dovecot, doveconf, doveadm) knows backfill's
    settings: it loads libbackfill_settings.so only from its compiled-in
    modules/settings.  Added beside Dovecot's own modules there, not over
    them: pigeonhole's (sieve) and any other stay known.  Empty on 2.3
    (the plugin {} section needs no declaration)."""
    if not IS_24 or not plugin_dir:
        return []
    d = os.path.join(plugin_dir, "settings-modules")
    if not os.path.isdir(d) or not os.path.isdir(SETTINGS_MODULE_DIR):
        return []
    return [(d, SETTINGS_MODULE_DIR, "add")]


def in_mount_ns(cmd, mounts):
    """cmd run in a private mount namespace (unshare -m) with each
    (source, target) of mounts bind-mounted over target, whose own files
    it hides; cmd itself if none.  A (source, target, "add") keeps
    target's files and adds source's: a tmpfs over target holds copies of
    target's files (a symlink to them would lead back into the tmpfs) and
    symlinks to source's, which win a name both have.  Nothing outside
    that namespace sees the mounts, and the tmpfs goes with it; a daemon
    keeps its own."""
    if not mounts:
        return list(cmd)
    steps = []
    for i, m in enumerate(mounts):
        src, dst = '"$%d"' % (2 * i + 1), '"$%d"' % (2 * i + 2)
        if m[2:] == ("add",):
            # the subshell's working directory is target's own, which the
            # tmpfs then hides from every path but "."
            steps.append(
                "(cd %s && mount -t tmpfs -o mode=755,size=64m backfill %s"
                " && for f in *; do [ ! -e \"$f\" ] || cp -p \"$f\" %s/ || exit 1;"
                " done && ln -sf %s/* %s/)" % (dst, dst, dst, src, dst))
        else:
            steps.append("mount --bind %s %s" % (src, dst))
    args = [x for m in mounts for x in m[:2]]
    return (["unshare", "-m", "sh", "-c",
             " && ".join(steps) + ' && shift %d && exec "$@"' % (2 * len(mounts)), "sh"]
            + args + list(cmd))


DOVEADM_MODULE_DIR = "/usr/lib/dovecot/modules/doveadm"


def doveadm_argv(conf_path, plugin_dir, args=(), modules=None):
    """The one command line that runs doveadm with the build's backfill
    doveadm module against a private instance's config: doveadm loads
    plugins only from its compiled-in directory, so the build's module
    directory (modules, default beside plugin_dir) is bind-mounted over it,
    and on 2.4 the settings module too (its config reader refuses the
    backfill_* settings otherwise), in a private mount namespace.  An
    installed package needs none of this.  The tests (bfdoveadm) and the
    demo (its own calls and the runbook's doveadm wrapper) all use it."""
    modules = modules or doveadm_modules_dir(plugin_dir)
    mounts = [(modules, DOVEADM_MODULE_DIR)] + settings_module_mounts(plugin_dir)
    return in_mount_ns([DOVEADM, "-c", conf_path] + list(args), mounts)


class DovecotError(Exception):
    pass


def free_ports(n):
    """Return n distinct TCP ports free on 127.0.0.1 right now.

    There is a window between closing the probe socket and Dovecot binding
    the port; start() retries with new ports if another process took one."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def chown_tree(path, uid=MAIL_UID, gid=MAIL_GID):
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            # a running server may remove a file between the listing and
            # here (SQLite's -wal and -shm at its last close)
            try:
                os.lchown(os.path.join(root, name), uid, gid)
            except FileNotFoundError:
                pass


def tree_checksum(path):
    """Hash of every name, mode, owner, size, mtime and content below path:
    proves that nothing was written into a tree (an archive)."""
    import hashlib
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            st = os.lstat(p)
            h.update(("%s %o %d %d %d %d\n" % (
                os.path.relpath(p, path), st.st_mode, st.st_uid, st.st_gid,
                st.st_size, int(st.st_mtime))).encode())
            if name in files and os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LIST_RE = re.compile(r'^\((?P<flags>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.*)$')


def _imap_unquote(s):
    s = s.strip()
    if s.startswith('"') and s.endswith('"'):
        return re.sub(r'\\(.)', r'\1', s[1:-1])
    return s


class Message:
    """One message as a server showed it."""

    def __init__(self, folder, uid, flags, internaldate, raw, uidvalidity=None):
        self.folder = folder
        self.uid = uid
        self.flags = frozenset(flags)
        self.internaldate = internaldate  # seconds since the epoch (int)
        self.raw = raw
        self.uidvalidity = uidvalidity
        self.fingerprint, self.hdr_key = fingerprint_ref.fingerprint(raw)

    def key(self, with_date=True):
        k = (self.folder, self.fingerprint, tuple(sorted(self.flags)))
        return k + (self.internaldate,) if with_date else k

    def __repr__(self):
        return "<Message %s/%s %s %s %s>" % (self.folder, self.uid,
                                             self.fingerprint[:12],
                                             sorted(self.flags),
                                             self.internaldate)


class Dovecot:
    """A private Dovecot. Parameters:

    plugin_dir     mail_plugin_dir (the build dir's dovecot-plugin), or None
    mail_plugins   value of mail_plugins for imap and pop3 (e.g. "backfill")
    plugin         dict of plugin {} settings
    extra_conf     text appended to dovecot.conf
    workdir        directory to use (default: a new temp dir, removed on stop)
    mail_root      where the users' homes are (default WORKDIR/home); two
                   instances can share one (e.g. the same mailboxes served
                   first without the plugin, then with it)
    lmtp_plugins   mail_plugins for lmtp (default: none)
    auto_mailboxes auto = for Drafts, Junk, Trash, Sent ("subscribe", "no")
    mail_location  default maildir:~/Maildir
    """

    def __init__(self, plugin_dir=None, mail_plugins="", plugin=None,
                 extra_conf="", workdir=None, mail_root=None, debug=False,
                 lmtp_plugins="", username_chars=None, passwd_file=None,
                 name="dovecot", auto_mailboxes="subscribe",
                 mail_location="maildir:~/Maildir"):
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="bf-%s-" % name)
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.plugin_dir = os.path.abspath(plugin_dir) if plugin_dir else None
        self.mail_plugins = mail_plugins
        self.lmtp_plugins = lmtp_plugins
        self.plugin = dict(plugin or {})
        self.extra_conf = extra_conf
        self.debug = debug
        self.username_chars = username_chars
        self.auto_mailboxes = auto_mailboxes  # "no" for an old server's view
        self.mail_location = mail_location
        self.base_dir = os.path.join(self.workdir, "run")
        self.state_dir = os.path.join(self.workdir, "state")
        self.log_dir = os.path.join(self.workdir, "log")
        self.log_path = os.path.join(self.log_dir, "dovecot.log")
        self.conf_path = os.path.join(self.workdir, "dovecot.conf")
        self.passwd_path = passwd_file or os.path.join(self.workdir, "passwd")
        self.mail_root = mail_root or os.path.join(self.workdir, "home")
        self.ports = {}
        self.master_pid = None
        self.users = {}
        self._lmtp = None  # lmtp_deliver()'s session
        for d in (self.base_dir, self.state_dir, self.log_dir):
            os.makedirs(d, exist_ok=True)
        os.makedirs(self.mail_root, exist_ok=True)
        os.chown(self.mail_root, MAIL_UID, MAIL_GID)
        if not os.path.exists(self.passwd_path):
            open(self.passwd_path, "a").close()
        os.chmod(self.passwd_path, 0o644)
        self._log_offset = 0
        self._passwd_changed = 0
        # users looked up by their whole name (user@domain), lower case
        self.full_usernames = False

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()

    def home(self, user):
        return os.path.join(self.mail_root, user.lower().replace("/", "%2f"))

    def maildir(self, user):
        return os.path.join(self.home(user), "Maildir")

    def _write_conf(self):
        p = self.ports
        plugin_lines = "".join("  %s = %s\n" % (k, v)
                               for k, v in sorted(self.plugin.items()))
        chars = ""
        if self.username_chars is not None:
            chars = "auth_username_chars = %s\n" % self.username_chars
        plugin_dir = ""
        if self.plugin_dir:
            plugin_dir = "mail_plugin_dir = %s\n" % self.plugin_dir
        debug = ""
        if self.debug:
            debug = "mail_debug = yes\nauth_debug = yes\n"
        conf = """# generated by tests/lib/dovecot.py
base_dir = {base}
state_dir = {state}
log_path = {log}
info_log_path = {log}
debug_log_path = {log}
instance_name = {instance}
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
{chars}first_valid_uid = {uid}
first_valid_gid = {gid}
default_internal_user = dovecot
default_login_user = dovenull
verbose_proctitle = yes
mail_max_userip_connections = 200
mail_location = {mail_location}
mail_temp_scan_interval = 0
{plugin_dir}{debug}pop3_uidl_format = %08Xu%08Xv
{passwd_file}service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service imap {{
  process_limit = 200
}}
service pop3 {{
  process_limit = 200
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_plugins = $mail_plugins {plugins}
}}
protocol pop3 {{
  mail_plugins = $mail_plugins {plugins}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins {lmtp_plugins}
}}
namespace inbox {{
  inbox = yes
  # Maildir++'s separator, for every mail format (mdbox archives too)
  separator = .
  # Debian's 15-mailboxes.conf: both Sent and "Sent Messages" are \\Sent,
  # so an archive from a server whose client used "Sent Messages" maps to
  # a live "Sent".
  mailbox Drafts {{
    special_use = \\Drafts
    auto = {auto}
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = {auto}
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = {auto}
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = {auto}
  }}
  mailbox "Sent Messages" {{
    special_use = \\Sent
  }}
}}
plugin {{
{plugin_lines}}}
{extra}
""".format(base=self.base_dir, state=self.state_dir, log=self.log_path,
           instance="bf-" + os.path.basename(self.workdir),
           chars=chars, uid=MAIL_UID, gid=MAIL_GID, plugin_dir=plugin_dir,
           debug=debug, imap=p["imap"],
           passwd_file=conf_passwd_file(
               self.passwd_path, plain=True,
               lower="user" if self.full_usernames else "username"),
           pop3=p["pop3"], lmtp=p["lmtp"], plugins=self.mail_plugins,
           lmtp_plugins=self.lmtp_plugins, plugin_lines=plugin_lines,
           extra=self.extra_conf, auto=self.auto_mailboxes,
           mail_location=self.mail_location)
        conf += self._sanitizer_conf()
        if IS_24:
            conf = conf_24(conf)
        with open(self.conf_path, "w") as f:
            f.write(conf)

    # ----------------------------------------------------------- sanitizers
    # make check-asan sets BACKFILL_SANITIZE_PRELOAD (the sanitizer runtimes
    # of the ASan+UBSan build, ':'-separated): Dovecot's own binaries are not
    # instrumented, so the runtimes are preloaded into every Dovecot process
    # (import_environment) and every doveadm the tests run (sanitizer_env).
    # Leak checks are off (Dovecot's own allocations at exit), any report
    # halts the process and goes to sanitizer_dir, checked at stop().
    @property
    def sanitizer_dir(self):
        return os.path.join(self.log_dir, "sanitizer")

    def _sanitizer_vars(self):
        preload = os.environ.get("BACKFILL_SANITIZE_PRELOAD")
        if not preload:
            return {}
        os.makedirs(self.sanitizer_dir, exist_ok=True)
        os.chmod(self.sanitizer_dir, 0o1777)
        d = self.sanitizer_dir
        return {
            "LD_PRELOAD": preload,
            "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:log_path=%s/asan" % d,
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:log_path=%s/ubsan" % d,
        }

    def _sanitizer_conf(self):
        v = self._sanitizer_vars()
        if not v:
            return ""
        # ASan reserves terabytes of address space: no vsz limit
        return "import_environment = $import_environment %s\ndefault_vsz_limit = 0\n" % (
            " ".join("%s=%s" % kv for kv in sorted(v.items())))

    def sanitizer_env(self, env=None):
        """env (default: this process's) plus the sanitizer runtime for a
        doveadm run by a test; env itself when sanitizers are off."""
        v = self._sanitizer_vars()
        if not v:
            return env
        out = dict(os.environ if env is None else env)
        out.update(v)
        return out

    def sanitizer_reports(self):
        try:
            names = sorted(os.listdir(self.sanitizer_dir))
        except FileNotFoundError:
            return ""
        out = []
        for n in names:
            with open(os.path.join(self.sanitizer_dir, n), errors="replace") as f:
                out.append("== %s\n%s" % (n, f.read()))
        return "\n".join(out)

    def start(self, timeout=30):
        last = ""
        for attempt in range(5):
            if attempt == 0 and self.ports:
                pass  # restart: keep the ports clients may know
            else:
                self.ports = dict(zip(("imap", "pop3", "lmtp"), free_ports(3)))
            self._write_conf()
            try:
                self._log_offset = os.path.getsize(self.log_path)
            except OSError:
                self._log_offset = 0
            # The daemonized master keeps the descriptors it was given: a
            # pipe here would never reach EOF, so its output goes to a file.
            out_path = os.path.join(self.log_dir, "startup.out")
            with open(out_path, "wb") as out:
                r = subprocess.run(in_mount_ns(
                    [DOVECOT, "-c", self.conf_path],
                    settings_module_mounts(self.plugin_dir)),
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, timeout=60)
            if r.returncode != 0:
                with open(out_path, "rb") as f:
                    msg = f.read().decode(errors="replace")
                last = "dovecot -c %s failed (exit %d): %s\n%s" % (
                    self.conf_path, r.returncode, msg, self.log_tail())
                # The master binds its listeners before it daemonizes: a
                # port another test (tests run beside each other) took
                # since free_ports() fails dovecot -c itself.  New ports.
                if "in use" in msg or "in use" in self.log_text(since_start=True):
                    continue
                raise DovecotError(last)
            try:
                self._wait_ready(timeout)
                self._passwd_changed = 0  # a new auth process reads the file afresh
                return self
            except DovecotError as e:
                last = str(e)
                self.stop()
                if "in use" not in self.log_text(since_start=True):
                    raise
        raise DovecotError("Dovecot did not start after 5 attempts: " + last)

    def _wait_ready(self, timeout):
        deadline = time.time() + timeout
        pidfile = os.path.join(self.base_dir, "master.pid")
        while time.time() < deadline:
            if self.master_pid is None and os.path.exists(pidfile):
                try:
                    with open(pidfile) as f:
                        self.master_pid = int(f.read().strip())
                except ValueError:
                    pass
            if self.master_pid and not _pid_alive(self.master_pid):
                raise DovecotError("Dovecot exited during start-up:\n" + self.log_tail())
            if "Fatal:" in self.log_text(since_start=True):
                raise DovecotError("Dovecot logged a fatal error at start-up:\n" + self.log_tail())
            if self.master_pid and all(self._accepts(port) for port in self.ports.values()):
                return
            time.sleep(0.05)
        raise DovecotError("Dovecot did not accept on %s within %ds:\n%s" % (
            self.ports, timeout, self.log_tail()))

    @staticmethod
    def _accepts(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(2)
                return bool(s.recv(16))  # every listener greets first
        except OSError:
            return False

    def stop(self, timeout=20):
        self._lmtp_close()
        pid = self.master_pid
        if pid is None:
            try:
                with open(os.path.join(self.base_dir, "master.pid")) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                return
        children = self.child_pids(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + timeout
        while time.time() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        # The master signals its children; wait for them too so that the
        # next instance on the same mail root does not race a late writer.
        deadline = time.time() + 10
        for c in children:
            while time.time() < deadline and _pid_alive(c):
                time.sleep(0.05)
            if _pid_alive(c):
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.master_pid = None
        reports = self.sanitizer_reports()
        if reports:
            raise DovecotError("sanitizer reports in %s:\n%s" % (self.sanitizer_dir, reports))

    def restart(self, **changes):
        """Stop, change attributes (mail_plugins, plugin, extra_conf, ...),
        start again on the same ports if they are still free."""
        self.stop()
        for k, v in changes.items():
            if not hasattr(self, k):
                raise AttributeError(k)
            setattr(self, k, v)
        return self.start()

    def cleanup(self):
        if self.own_workdir and not os.environ.get("BF_KEEP_TMP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ processes
    def child_pids(self, master=None):
        master = master or self.master_pid
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit() and _ppid(int(d)) == master:
                out.append(int(d))
        return out

    def session_pids(self, user=None, service=None):
        """PIDs of this instance's imap/pop3 processes (of one user).
        verbose_proctitle makes them `dovecot/imap [alice 127.0.0.1 ...]`."""
        out = []
        for pid in self.child_pids():
            cmd = _cmdline(pid)
            m = re.match(r"dovecot[^ /]*/(imap|pop3)(?: \[([^ \]]*)| |$)", cmd)
            if not m or (service and m.group(1) != service):
                continue
            if user is not None and m.group(2) != user.lower():
                continue
            out.append(pid)
        return out

    # ------------------------------------------------------------ users
    def add_user(self, user, password=PASSWORD, home=None, extra=""):
        """Add a passwd-file entry (uid/gid mail); the home is created by
        Dovecot at first use unless it exists.  extra: userdb fields in
        2.3 syntax (userdb_mail=maildir:/path, %n), written as the
        installed release wants them."""
        home = home or self.home(user)
        self.users[user.lower()] = (password, home)
        with open(self.passwd_path) as f:
            old = f.read()
        self._write_passwd(old + self._passwd_line(user, password, home, extra))
        return home

    def set_user(self, user, home=None, extra=""):
        """Replace an existing user's passwd-file entry: home="" leaves
        the user without a home (then extra must say where the mail is,
        e.g. userdb_mail=maildir:/abs/path); None keeps the usual one."""
        password = self.password(user)
        if home is None:
            home = self.home(user)
        self.users[user.lower()] = (password, home)
        with open(self.passwd_path) as f:
            old = f.read()
        new, n = re.subn(r"(?m)^%s:.*\n" % re.escape(user.lower()),
                         lambda m: self._passwd_line(user, password, home, extra),
                         old)
        if n != 1:
            raise DovecotError("set_user: %s has %d passwd-file entries" % (user, n))
        self._write_passwd(new)

    @staticmethod
    def _passwd_line(user, password, home, extra):
        return "%s:{PLAIN}%s:%d:%d::%s::%s\n" % (user.lower(), password, MAIL_UID,
                                                MAIL_GID, home, _passwd_extra(extra))

    def _write_passwd(self, text):
        # Replace the file and step its mtime: Dovecot re-reads a
        # passwd-file when its stamp changes, and two changes within one
        # second could otherwise go unnoticed by a cached copy.
        st = os.stat(self.passwd_path)
        tmp = self.passwd_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        stamp = max(int(time.time()), int(st.st_mtime) + 1)
        os.utime(tmp, (stamp, stamp))
        os.rename(tmp, self.passwd_path)
        self._passwd_changed = time.time()

    def _passwd_settle(self):
        """Dovecot's auth looks at a passwd-file's stamp at most once per
        second (of its ioloop clock): a lookup in the second the file
        changed may still use the old copy. Wait for the next second once
        after a change, before the next client or doveadm call."""
        if self._passwd_changed:
            wait = int(self._passwd_changed) + 1.02 - time.time()
            if wait > 0:
                time.sleep(wait)
            self._passwd_changed = 0

    def password(self, user):
        return self.users.get(user.lower(), (PASSWORD,))[0]

    # ------------------------------------------------------------ clients
    def imap(self, user, password=None, timeout=60):
        self._passwd_settle()
        c = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=timeout)
        try:
            c.login(user, password or self.password(user))
        except BaseException:
            c.shutdown()
            raise
        return c

    def pop3(self, user, password=None, timeout=60):
        self._passwd_settle()
        c = poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=timeout)
        try:
            c.user(user)
            c.pass_(password or self.password(user))
        except BaseException:
            c.close()
            raise
        return c

    def lmtp_deliver(self, rcpt, raw, sender="sender@example.org"):
        """Delivers raw to rcpt; returns when Dovecot has saved it.  The
        deliveries in a row share one LMTP session, as an MTA's do: a
        connection of its own cost each about 100 ms more on Dovecot 2.4
        (130 ms against 31), and the suite delivers thousands.  A session
        the server has closed since (a restart) is replaced first, before
        anything is sent."""
        import smtplib
        self._passwd_settle()
        if self._lmtp is not None:
            s, port = self._lmtp
            try:
                if port != self.ports["lmtp"] or s.noop()[0] != 250:
                    raise smtplib.SMTPException("stale")
            except (smtplib.SMTPException, OSError):
                self._lmtp_close()
        if self._lmtp is None:
            self._lmtp = (smtplib.LMTP("127.0.0.1", self.ports["lmtp"]),
                          self.ports["lmtp"])
        try:
            self._lmtp[0].sendmail(sender, [rcpt], raw)
        except BaseException:
            # refused or cut: the next delivery starts a clean session
            self._lmtp_close()
            raise

    def _lmtp_close(self):
        if self._lmtp is not None:
            s, self._lmtp = self._lmtp[0], None
            try:
                s.quit()
            except Exception:
                s.close()

    def pop3_uidls(self, user):
        """[(uidl, fingerprint)] in POP3 order, with message bodies fetched
        by RETR so a UIDL can be tied to a message."""
        c = self.pop3(user)
        try:
            out = []
            resp, lines, _ = c.uidl()
            for line in lines:
                num, uidl = line.decode().split(" ", 1)
                resp, body, _ = c.retr(int(num))
                # poplib strips CRLF and un-dot-stuffs; rejoin with CRLF.
                raw = b"\r\n".join(body) + b"\r\n"
                out.append((uidl, fingerprint_ref.fingerprint(raw)[0]))
            return out
        finally:
            c.quit()

    def pop3_uidl_list(self, user):
        """[uidl] in POP3 order, without fetching messages."""
        c = self.pop3(user)
        try:
            resp, lines, _ = c.uidl()
            return [line.decode().split(" ", 1)[1] for line in lines]
        finally:
            c.quit()

    def folders(self, user, conn=None):
        """{name: set(special-use and other flags)} via LIST RETURN (SPECIAL-USE)."""
        c = conn or self.imap(user)
        try:
            typ, data = c.list()
            typ2, data2 = c._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            _, data2 = c._untagged_response(typ2, data2, "LIST")
            out = {}
            for line in list(data) + list(data2):
                if line is None:
                    continue
                if isinstance(line, tuple):
                    line = line[0] + b'"' + line[1] + b'"'
                m = _LIST_RE.match(line.decode("utf-8", "replace"))
                if not m:
                    continue
                name = _imap_unquote(m.group("name"))
                out.setdefault(name, set()).update(m.group("flags").split())
            return out
        finally:
            if conn is None:
                c.logout()

    def subscriptions(self, user):
        c = self.imap(user)
        try:
            typ, data = c.lsub()
            out = set()
            for line in data:
                if line is None:
                    continue
                m = _LIST_RE.match(line.decode("utf-8", "replace"))
                if m:
                    out.add(_imap_unquote(m.group("name")))
            return out
        finally:
            c.logout()

    def mailbox(self, user, folder, conn=None):
        """(uidvalidity, [Message]) of one folder, read without setting \\Seen."""
        c = conn or self.imap(user)
        try:
            typ, data = c.select(_imap_quote(folder), readonly=True)
            if typ != "OK":
                raise DovecotError("SELECT %s failed: %r" % (folder, data))
            uv = int(c.untagged_responses.get("UIDVALIDITY", [b"0"])[-1])
            n = int(data[0])
            msgs = []
            if n:
                typ, data = c.fetch("1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    head = item[0].decode("utf-8", "replace")
                    uid = int(re.search(r"UID (\d+)", head).group(1))
                    flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
                    idate = re.search(r'INTERNALDATE "([^"]*)"', head).group(1)
                    ts = int(datetime.datetime.strptime(
                        idate.strip(), "%d-%b-%Y %H:%M:%S %z").timestamp())
                    flags = [f for f in flags if f != "\\Recent"]
                    msgs.append(Message(folder, uid, flags, ts, item[1], uv))
            return uv, msgs
        finally:
            if conn is None:
                c.logout()

    def snapshot(self, user):
        """{folder: (uidvalidity, [Message])} of every selectable folder."""
        c = self.imap(user)
        try:
            out = {}
            for name, flags in sorted(self.folders(user, conn=c).items()):
                if "\\Noselect" in flags or "\\NonExistent" in flags:
                    continue
                out[name] = self.mailbox(user, name, conn=c)
            return out
        finally:
            c.logout()

    def append(self, user, folder, raw, flags=(), date=None, conn=None):
        c = conn or self.imap(user)
        try:
            c.create(_imap_quote(folder))
            idate = imaplib.Time2Internaldate(date) if date else None
            typ, data = c.append(_imap_quote(folder),
                                 "(" + " ".join(flags) + ")" if flags else None,
                                 idate, raw)
            if typ != "OK":
                raise DovecotError("APPEND to %s failed: %r" % (folder, data))
        finally:
            if conn is None:
                c.logout()

    # ------------------------------------------------------------ doveadm
    def doveadm(self, *args, check=True, input=None, env=None):
        self._passwd_settle()
        r = subprocess.run(in_mount_ns(
            [DOVEADM, "-c", self.conf_path] + list(args),
            settings_module_mounts(self.plugin_dir)),
                           input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.sanitizer_env(env))
        if check and r.returncode != 0:
            raise DovecotError("doveadm %s: exit %d: %s %s" % (
                " ".join(args), r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")))
        return r

    # ------------------------------------------------------------ logs
    def log_text(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern=None, since_start=False):
        lines = self.log_text(since_start).splitlines()
        if pattern is None:
            return lines
        rx = re.compile(pattern)
        return [l for l in lines if rx.search(l)]

    def wait_log_lines(self, pattern, n=1, timeout=30):
        """log_lines(pattern) once it has n lines, or what it has after
        timeout seconds (the caller asserts): Dovecot's log process writes
        a line a little after the process that logged it went on, e.g.
        after the login it was logged in has answered the client."""
        deadline = time.monotonic() + timeout
        lines = self.log_lines(pattern)
        while len(lines) < n and time.monotonic() < deadline:
            time.sleep(0.05)
            lines = self.log_lines(pattern)
        return lines

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()
        return "--- %s (last %d lines) ---\n%s" % (self.log_path, n, "\n".join(lines[-n:]))

    def assert_log_clean(self, allow_errors=False):
        bad = self.log_lines(r"\b(Panic|Fatal)\b" if allow_errors
                             else r"\b(Panic|Fatal|Error)\b")
        if bad:
            raise AssertionError("Dovecot logged problems:\n" + "\n".join(bad[:30]))


def messages_multiset(snapshot, with_date=True, exclude_flags=()):
    """Sorted list of (folder, fingerprint, flags[, date]) of a snapshot()."""
    out = []
    for folder, (uv, msgs) in snapshot.items():
        for m in msgs:
            flags = tuple(sorted(f for f in m.flags if f not in exclude_flags))
            k = (folder, m.fingerprint, flags)
            out.append(k + (m.internaldate,) if with_date else k)
    return sorted(out)


def imap_date(ts):
    return email.utils.formatdate(ts)
