"""Headless Chromium (Debian's package) for the report tests: the DOM as
the browser built it, and screenshots that must not be blank."""
import os
import shutil
import struct
import subprocess
import tempfile

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def available():
    return os.path.exists(CHROMIUM)


def run(*args, timeout=120):
    """Runs chromium headless with a throw-away profile."""
    profile = tempfile.mkdtemp(prefix="bf-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--user-data-dir=" + profile] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
            stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page, width, height, keep=None):
    """Screenshot of the file page; returns (width, height, bytes, stderr)
    of the PNG.  keep: a path to copy it to (to look at it)."""
    shot_dir = tempfile.mkdtemp(prefix="bf-chromium-shot-")
    try:
        png = os.path.join(shot_dir, "page.png")
        r = run("--window-size=%d,%d" % (width, height), "--hide-scrollbars",
                "--screenshot=" + png, "file://" + page)
        if not os.path.exists(png):
            return 0, 0, 0, r.stderr.decode(errors="replace")[-2000:]
        with open(png, "rb") as f:
            head = f.read(24)
        if head[:8] != b"\x89PNG\r\n\x1a\n":
            return 0, 0, 0, "not a PNG"
        w, h = struct.unpack(">II", head[16:24])
        if keep:
            shutil.copyfile(png, keep)
        return w, h, os.path.getsize(png), ""
    finally:
        shutil.rmtree(shot_dir, ignore_errors=True)
