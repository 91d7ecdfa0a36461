#!/usr/bin/python3
"""Where the merge's time goes, and how fast it could be at best: the
floor under issue 3's hardlink target (docs/benchmarks-merge.md).

    sudo /usr/bin/python3 bench/merge-floor/run.py [--rounds 3]

Builds the plugin of this checkout once more in a temporary git worktree
with instrument.patch applied (timers around each step of the merge, and
switches that leave out one piece of work each), then, on the hardlink
data of bench/merge-vs-import.py (20,000 archived, 2,000 live, 1,000
overlapping), runs per round `doveadm import` and `doveadm backfill run`
once per variant, each on a fresh copy of the live mailbox and state:

    base      the merge as shipped
    noread    archived messages not read (keys made up from the UID: no
              dedup against live, everything added)
    nouidl    no POP3 UIDL looked up or set
    nokw      no keywords (neither the archive's nor backfill_keyword)
    nojournal checkpoints without journal entries

Variants combine with "+".  Prints import's time over each variant's
(wall and CPU), the medians, and the instrumented plugin's breakdown
(microseconds) for each run.  The switches are files in
/tmp/backfill-floor/: doveadm clears the environment of mail commands.
Not a product build: nothing here is installed.
"""
import argparse
import importlib.util
import os
import resource
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
SRC = os.path.dirname(os.path.dirname(HERE))
SWITCH_DIR = "/tmp/backfill-floor"

spec = importlib.util.spec_from_file_location(
    "mvi", os.path.join(SRC, "bench", "merge-vs-import.py"))
mvi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mvi)


def build(tmp):
    wt = os.path.join(tmp, "src")
    subprocess.run(["git", "-C", SRC, "worktree", "add", "--detach", wt, "HEAD"],
                   check=True, capture_output=True)
    subprocess.run(["git", "-C", wt, "apply", os.path.join(HERE, "instrument.patch")],
                   check=True)
    bdir = os.path.join(wt, "build")
    subprocess.run(["meson", "setup", bdir], cwd=wt, check=True, capture_output=True)
    subprocess.run(["ninja", "-C", bdir], check=True, capture_output=True)
    return wt, os.path.join(bdir, "dovecot-plugin")


def timed(cmd, **kw):
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return r, wall, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("variants", nargs="*",
                    default=["base", "noread", "noread+nouidl+nokw+nojournal"])
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bf-floor-")
    wt = None
    try:
        wt, plugin_dir = build(tmp)
        args = argparse.Namespace(plugin_dir=plugin_dir, tmpdir=None, tmpfs_mb=2048,
                                  keep=False, scale=1.0)
        b = mvi.Bench(args)
        wall = {v: [] for v in a.variants}
        cpu = {v: [] for v in a.variants}
        try:
            scen = mvi.mg.bulk_scenario(1, 20000, 2000, 1000)
            live_home, arch = b.make_user("floor", scen, archive_on_tmpfs=False)
            pristine = live_home + ".pristine"
            subprocess.run(["cp", "-a", live_home, pristine], check=True)
            imp_home = os.path.join(b.base, "live", "floorimp")
            b.dc.add_user("floorimp", home=imp_home)
            modules = mvi.dv.doveadm_modules_dir(plugin_dir)
            for rnd in range(a.rounds):
                mvi._reset_live(pristine, imp_home)
                mvi._drop_indexes(arch)
                subprocess.run(["sync"])
                b.dc._passwd_settle()
                _, w_imp, c_imp = timed([mvi.dv.DOVEADM, "-c", b.dc.conf_path, "import",
                                         "-u", "floorimp", "-s", "maildir:" + arch, "", "all"])
                line = "round %d: import %.2fs" % (rnd + 1, w_imp)
                for v in a.variants:
                    mvi._reset_live(pristine, live_home)
                    for f in os.listdir(b.state_dir):
                        os.unlink(os.path.join(b.state_dir, f))
                    shutil.rmtree(SWITCH_DIR, ignore_errors=True)
                    os.makedirs(SWITCH_DIR)
                    if v != "base":
                        for k in v.split("+"):
                            open(os.path.join(SWITCH_DIR, "BFX_" + k.upper()), "w").close()
                    subprocess.run(["sync"])
                    b.dc._passwd_settle()
                    r, w, c = timed(["unshare", "-m", "sh", "-c",
                                     'mount --bind "$0" %s && exec "$@"' % mvi.MODULE_DIR,
                                     modules, mvi.dv.DOVEADM, "-c", b.dc.conf_path, "-f", "tab",
                                     "backfill", "run", "-u", "floor"])
                    if "\tdone\t" not in r.stdout:
                        raise SystemExit("%s: run failed: %s %s" % (v, r.stdout, r.stderr[-400:]))
                    for l in r.stderr.splitlines():
                        if "BFX" in l:
                            print("    %s: %s" % (v, l[l.find("BFX") + 4:]))
                    wall[v].append(w_imp / w)
                    cpu[v].append(c_imp / c)
                    line += " | %s %.2fs ratio %.2f" % (v, w, w_imp / w)
                print(line, flush=True)
            for v in a.variants:
                print("%-45s import/merge, medians of %d: wall %.2f, CPU %.2f" % (
                    v, a.rounds, statistics.median(wall[v]), statistics.median(cpu[v])))
        finally:
            b.close()
    finally:
        shutil.rmtree(SWITCH_DIR, ignore_errors=True)
        if wt is not None:
            subprocess.run(["git", "-C", SRC, "worktree", "remove", "--force", wt],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
