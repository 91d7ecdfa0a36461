#!/usr/bin/python3
"""backfill merge against `doveadm import` of the same data, in one run.

    sudo /usr/bin/python3 bench/merge-vs-import.py --plugin-dir BUILD/dovecot-plugin

1. Throughput: an archive of 20,000 messages, a live mailbox of 2,000 of
   which 1,000 are archived messages redelivered. backfill merges it on the
   first IMAP login (dedup on); `doveadm import` copies the same archive into
   a fresh copy of the same live mailbox (no dedup). Archived messages per
   second of each, and the ratio, in two modes:
     hardlink  archive on the live filesystem, owned by the mail user
     copy      archive on its own tmpfs (no hardlink possible)
   If the build has the doveadm plugin, `doveadm backfill run -u USER` of
   the same data is measured too.
2. Login latency: LOGIN + SELECT INBOX with 50,000 archived messages
   pending, against the same login with the plugin off (target: at most
   backfill_login_budget + 50 ms more).
3. Peak RSS (VmHWM) of the imap process merging a 100,000-message archive
   (target: under 64 MB).

Runs as root inside its own mount namespace (unshare -m) so the tmpfs it
mounts disappears with it. Sizes can be scaled down for a quick look with
--scale 0.1. Stdlib only.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

if os.geteuid() == 0 and not os.environ.get("BF_IN_UNSHARE"):
    os.environ["BF_IN_UNSHARE"] = "1"
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private",
                          sys.executable] + sys.argv)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
import dovecot as dv  # noqa: E402
import maildir_gen as mg  # noqa: E402

MODULE_DIR = "/usr/lib/dovecot/modules/doveadm"


class MergeFailed(Exception):
    pass


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.base = tempfile.mkdtemp(prefix="bf-bench-", dir=args.tmpdir)
        os.chmod(self.base, 0o755)
        self.state_dir = os.path.join(self.base, "state")
        os.makedirs(self.state_dir)
        dv.chown_tree(self.state_dir)
        self.mounts = []
        self.settings = {
            "backfill_archive": "maildir:%s/archive/%%Ln/Maildir" % self.base,
            "backfill_state": "sqlite:%s/state.db" % self.state_dir,
            "backfill_login_budget": "300ms",
        }
        self.dc = dv.Dovecot(plugin_dir=args.plugin_dir, mail_plugins="backfill",
                             plugin=self.settings, workdir=os.path.join(self.base, "dovecot"),
                             mail_root=os.path.join(self.base, "live"),
                             extra_conf='pop3_deleted_flag = "$POP3Deleted"\n')
        self.dc.start()

    def close(self):
        self.dc.stop()
        for m in self.mounts:
            subprocess.run(["umount", m], check=False)
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            log("kept", self.base)

    # ------------------------------------------------------------ set-up
    def make_user(self, user, scen, archive_on_tmpfs=False, archive=True):
        live_home = os.path.join(self.base, "live", user)
        mg.write_maildir(os.path.join(live_home, "Maildir"), scen.live, host="new-mx")
        dv.chown_tree(live_home)
        arch_home = os.path.join(self.base, "archive", user)
        if archive:
            os.makedirs(arch_home)
            if archive_on_tmpfs:
                # its own filesystem: nothing can be hardlinked from it
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % self.args.tmpfs_mb,
                                "bf-bench", arch_home], check=True)
                self.mounts.append(arch_home)
                os.chmod(arch_home, 0o755)
            mg.write_maildir(os.path.join(arch_home, "Maildir"), scen.archive)
        self.dc.add_user(user, home=live_home)
        return live_home, os.path.join(arch_home, "Maildir")

    def clone_live(self, src_user, user):
        """A fresh copy of src_user's live mailbox for another user."""
        src = os.path.join(self.base, "live", src_user)
        dst = os.path.join(self.base, "live", user)
        subprocess.run(["cp", "-a", src, dst], check=True)
        self.dc.add_user(user, home=dst)
        return dst

    def wait_idle(self, user, timeout=60):
        """Wait until no session process of user is left (a logged-out
        imap process may still be closing its mailboxes)."""
        deadline = time.time() + timeout
        while self.dc.session_pids(user) and time.time() < deadline:
            time.sleep(0.02)

    def finished(self, user):
        return self.dc.log_lines(r"\(%s\)(?:<[^>]*>)*: \w+: backfill: merge finished" % re.escape(user))

    def merge(self, user, poll=0.02, timeout=1800, after=0):
        """Log in and keep the session alive until the merge finishes
        (a lost session is logged in again, as a client would).
        Returns (wall seconds from LOGIN to the finish line, the plugin's
        own seconds, VmHWM kB of the imap process, finish line); raises
        MergeFailed if the plugin keeps crashing."""
        import imaplib
        self.dc._passwd_settle()  # not part of the merge's time
        t0 = time.time()
        hwm = 0
        lost = 0
        while len(self.finished(user)) <= after:
            if time.time() - t0 > timeout:
                raise MergeFailed("merge of %s not finished after %ds" % (user, timeout))
            try:
                c = self.dc.imap(user)
                try:
                    while len(self.finished(user)) <= after:
                        for pid in self.dc.session_pids(user, "imap"):
                            hwm = max(hwm, vmhwm(pid))
                        c.noop()
                        time.sleep(poll)
                    for pid in self.dc.session_pids(user, "imap"):
                        hwm = max(hwm, vmhwm(pid))
                finally:
                    try:
                        c.logout()
                    except (OSError, imaplib.IMAP4.error):
                        pass
            except (OSError, imaplib.IMAP4.error):
                lost += 1
                panics = self.dc.log_lines(r"imap\(%s\).*Panic:" % re.escape(user))
                if len(panics) >= 3:
                    raise MergeFailed("the imap process panicked %d times: %s" % (
                        len(panics), panics[-1].split(": ", 2)[-1]))
        wall = time.time() - t0
        line = self.finished(user)[-1]
        m = re.search(r"([\d.]+) s in this session", line)
        return wall, float(m.group(1)) if m else wall, hwm, line

    def doveadm_run(self, user):
        """`doveadm backfill run -u USER`; doveadm loads modules only from
        its compiled-in directory, so the build's doveadm-modules is
        bind-mounted over it in a nested mount namespace."""
        modules = dv.doveadm_modules_dir(self.args.plugin_dir)
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" %s && exec "$@"' % MODULE_DIR,
               modules, dv.DOVEADM, "-c", self.dc.conf_path, "-f", "tab", "backfill", "run",
               "-u", user]
        self.dc._passwd_settle()
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.time() - t0
        if r.returncode != 0 or "done" not in r.stdout:
            raise MergeFailed("doveadm backfill run exit %d: %s %s" % (
                r.returncode, r.stdout[-500:], r.stderr[-500:]))
        return secs

    def doveadm_import(self, user, archive_maildir):
        self.dc._passwd_settle()
        t0 = time.time()
        self.dc.doveadm("import", "-u", user, "-s", "maildir:" + archive_maildir, "", "all")
        return time.time() - t0


def vmhwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def count_messages(maildir):
    n = 0
    for root, dirs, files in os.walk(maildir):
        if os.path.basename(root) in ("cur", "new"):
            n += len(files)
    return n


def hardlinked(maildir):
    n = 0
    for root, dirs, files in os.walk(maildir):
        if os.path.basename(root) in ("cur", "new"):
            n += sum(os.lstat(os.path.join(root, f)).st_nlink > 1 for f in files)
    return n


def _reset_live(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", src, dst], check=True)


def _drop_indexes(maildir):
    """Forget the Dovecot indexes a previous `doveadm import` wrote into
    the archive, so every repetition starts from the restored tree."""
    for root, dirs, files in os.walk(maildir):
        for f in files:
            if f.startswith(("dovecot.index", "dovecot.list.index", "dovecot.mailbox.log")):
                os.unlink(os.path.join(root, f))


def throughput(b, scale, mode, seed, repeat):
    n_arch, n_live, n_over = int(20000 * scale), int(2000 * scale), int(1000 * scale)
    log("[%s] generating %d archived, %d live (%d overlapping)" % (mode, n_arch, n_live, n_over))
    scen = mg.bulk_scenario(seed, n_arch, n_live, n_over)
    um, ui = "m" + mode, "i" + mode
    live_home, arch = b.make_user(um, scen, archive_on_tmpfs=(mode == "copy"))
    pristine = live_home + ".pristine"
    subprocess.run(["cp", "-a", live_home, pristine], check=True)
    imp_home = os.path.join(b.base, "live", ui)
    b.dc.add_user(ui, home=imp_home)
    merges, imports, failed, links, live_after, imp_after = [], [], None, 0, 0, 0
    runs = []
    has_run = os.path.exists(os.path.join(dv.doveadm_modules_dir(b.args.plugin_dir),
                                          "lib95_doveadm_backfill_plugin.so"))

    def run_merge():
        nonlocal links, live_after
        b.wait_idle(um)
        _reset_live(pristine, live_home)
        for f in os.listdir(b.state_dir):
            os.unlink(os.path.join(b.state_dir, f))
        n0 = len(b.finished(um))
        subprocess.run(["sync"])
        wall, own, hwm, line = b.merge(um, after=n0)
        log("[%s] merge: %.2fs wall (%.2fs in the plugin): %s" % (mode, wall, own, line.split(": ", 2)[-1]))
        merges.append(wall)
        b.wait_idle(um)
        live_after = count_messages(os.path.join(live_home, "Maildir"))
        links = hardlinked(os.path.join(live_home, "Maildir"))

    def run_import():
        nonlocal imp_after
        _reset_live(pristine, imp_home)
        _drop_indexes(arch)
        subprocess.run(["sync"])
        t = b.doveadm_import(ui, arch)
        imports.append(t)
        imp_after = count_messages(os.path.join(imp_home, "Maildir"))
        log("[%s] doveadm import: %.2fs, live now %d" % (mode, t, imp_after))

    def run_doveadm():
        b.wait_idle(um)
        _reset_live(pristine, live_home)
        for f in os.listdir(b.state_dir):
            os.unlink(os.path.join(b.state_dir, f))
        subprocess.run(["sync"])
        t = b.doveadm_run(um)
        runs.append(t)
        log("[%s] doveadm backfill run: %.2fs, live now %d" % (
            mode, t, count_messages(os.path.join(live_home, "Maildir"))))

    steps = [run_merge, run_import] + ([run_doveadm] if has_run else [])
    try:
        for r in range(repeat):
            # rotate the order: a writer meets the previous one's dirty
            # pages being flushed
            for i in range(len(steps)):
                steps[(r + i) % len(steps)]()
    except MergeFailed as e:
        failed = str(e)
        log("[%s] merge FAILED: %s" % (mode, failed))
        if not imports:
            run_import()
    wall = statistics.median(merges) if merges else float("nan")
    t_imp = statistics.median(imports)
    return {
        "mode": mode, "archived": n_arch, "merge_s": wall,
        "merge_rate": n_arch / wall, "import_s": t_imp, "import_rate": n_arch / t_imp,
        "ratio": t_imp / wall, "ratios": [i / m for m, i in zip(merges, imports)],
        "live_after_merge": live_after, "live_after_import": imp_after,
        "hardlinks": links, "failed": failed, "repeat": len(merges),
        "run_s": statistics.median(runs) if runs else None,
    }


def login_latency(b, scale, seed, rounds=5):
    n = int(50000 * scale)
    log("[latency] generating %d archived" % n)
    scen = mg.bulk_scenario(seed, n, 200, 0, lines=4, multipart_share=0.0)
    live_home, arch = b.make_user("lat", scen)
    pristine = live_home + ".pristine"
    subprocess.run(["cp", "-a", live_home, pristine], check=True)

    def one():
        b.dc._passwd_settle()
        t0 = time.time()
        c = b.dc.imap("lat")
        c.select("INBOX")
        t = time.time() - t0
        c.logout()
        return t

    def reset():
        b.wait_idle("lat")
        shutil.rmtree(live_home)
        subprocess.run(["cp", "-a", pristine, live_home], check=True)
        for f in os.listdir(b.state_dir):
            os.unlink(os.path.join(b.state_dir, f))

    b.dc.restart(mail_plugins="")
    off = [one() for _ in range(rounds)]
    b.dc.restart(mail_plugins="backfill")
    on = []
    for _ in range(rounds):
        reset()
        subprocess.run(["sync"])
        on.append(one())
    return {"pending": n, "off_ms": statistics.median(off) * 1000,
            "on_ms": statistics.median(on) * 1000,
            "added_ms": (statistics.median(on) - statistics.median(off)) * 1000,
            "budget_ms": 300}


def peak_rss(b, scale, seed):
    n = int(100000 * scale)
    log("[rss] generating %d archived" % n)
    scen = mg.bulk_scenario(seed, n, 1000, 500, lines=4, multipart_share=0.02)
    b.make_user("rss", scen)
    try:
        wall, own, hwm, line = b.merge("rss", poll=0.05)
    except MergeFailed as e:
        return {"archived": n, "failed": str(e)}
    log("[rss] %s" % line.split(": ", 2)[-1])
    return {"archived": n, "vmhwm_kb": hwm, "seconds": wall, "rate": n / wall, "failed": None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugin-dir", default=os.environ.get("BACKFILL_PLUGIN_DIR")
                    or os.path.join(SRC, "build", "dovecot-plugin"))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size (quick look: 0.1)")
    ap.add_argument("--only", choices=("throughput", "latency", "rss"), action="append")
    ap.add_argument("--tmpdir", default=None, help="where the mailboxes go (default: $TMPDIR)")
    ap.add_argument("--tmpfs-mb", type=int, default=2048)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="throughput rounds (medians reported)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (private Dovecot with mail uid 8)")
    if not os.path.exists(os.path.join(args.plugin_dir, "lib95_backfill_plugin.so")):
        sys.exit("no lib95_backfill_plugin.so in %s (--plugin-dir)" % args.plugin_dir)
    only = set(args.only or ("throughput", "latency", "rss"))
    b = Bench(args)
    rc = 0
    try:
        print("backfill merge vs doveadm import (scale %g, %d CPUs, Dovecot %s)" % (
            args.scale, os.cpu_count(),
            subprocess.run([dv.DOVECOT, "--version"], capture_output=True, text=True).stdout.strip()))
        if "throughput" in only:
            for mode, seed in (("hardlink", 21), ("copy", 22)):
                r = throughput(b, args.scale, mode, seed, args.repeat)
                if r["failed"]:
                    print("%-8s %6d archived: merge FAILED (%s); doveadm import %7.0f msg/s (%.2fs)"
                          % (r["mode"], r["archived"], r["failed"], r["import_rate"], r["import_s"]))
                    rc = 1
                    continue
                print("%-8s %6d archived: merge %7.0f msg/s (%.2fs, %d hardlinked), "
                      "doveadm import %7.0f msg/s (%.2fs); ratio merge/import %.2f %s "
                      "(medians of %d; ratios per round %s)" % (
                          r["mode"], r["archived"], r["merge_rate"], r["merge_s"], r["hardlinks"],
                          r["import_rate"], r["import_s"], r["ratio"],
                          "ok" if r["ratio"] >= 1.0 else "BELOW TARGET 1.0", r["repeat"],
                          " ".join("%.2f" % x for x in r["ratios"])))
                if r["run_s"]:
                    run_ratio = r["import_s"] / r["run_s"]
                    print("%-8s %6d archived: doveadm backfill run %7.0f msg/s (%.2fs); "
                          "ratio run/import %.2f %s" % (
                              r["mode"], r["archived"], r["archived"] / r["run_s"], r["run_s"],
                              run_ratio, "ok" if run_ratio >= 1.0 else "BELOW TARGET 1.0"))
                if r["ratio"] < 1.0:
                    rc = 1
        if "latency" in only:
            r = login_latency(b, args.scale, 23)
            ok = r["added_ms"] <= r["budget_ms"] + 50
            print("login+SELECT with %d pending: %.0f ms, plugin off %.0f ms: added %.0f ms "
                  "(target <= budget %d + 50) %s" % (r["pending"], r["on_ms"], r["off_ms"],
                                                     r["added_ms"], r["budget_ms"],
                                                     "ok" if ok else "ABOVE TARGET"))
            rc |= 0 if ok else 1
        if "rss" in only:
            r = peak_rss(b, args.scale, 24)
            if r["failed"]:
                print("peak RSS merging %d messages: merge FAILED (%s)" % (r["archived"], r["failed"]))
                return 1
            ok = r["vmhwm_kb"] < 64 * 1024
            print("peak RSS merging %d messages: %.1f MB VmHWM of the imap process "
                  "(%.0f msg/s) (target < 64 MB) %s" % (r["archived"], r["vmhwm_kb"] / 1024.0,
                                                       r["rate"], "ok" if ok else "ABOVE TARGET"))
            rc |= 0 if ok else 1
        b.dc.assert_log_clean(allow_errors=True)
    finally:
        b.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
