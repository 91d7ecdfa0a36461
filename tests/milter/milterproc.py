"""A private backfill-milter for a test: temporary directory with its
config, unix socket, SQLite state store and log; stopped with SIGTERM."""

import os
import signal
import subprocess
import tempfile
import time


# Built with ASan (make check-asan): RSS figures are not ours to bound.
SANITIZED = os.environ.get('BACKFILL_SANITIZED') == '1'


def unix_listening(path, pid=None):
    """True once the unix socket at path accepts connections.

    libmilter creates the socket file at bind() and calls listen() a
    moment later; a connect in between is refused (seen once in CI under
    ASan).  /proc/net/unix marks a listening socket with __SO_ACCEPTCON
    (0x10000) in its Flags column, so this asks without connecting.  The
    list is per network namespace: with the listener's pid, its own
    namespace's list is read (a milter started in another netns)."""
    table = '/proc/%d/net/unix' % pid if pid else '/proc/net/unix'
    try:
        f = open(table)
    except FileNotFoundError:  # the process is gone
        return False
    with f:
        next(f)
        for line in f:
            fields = line.split(None, 7)
            if (len(fields) == 8 and fields[7].rstrip('\n') == path
                    and int(fields[3], 16) & 0x10000):
                return True
    return False


def catches(pid, *signums):
    """True once the process has a handler for each of signums.

    backfill-milter listens on its socket before it is ready: the
    socket's group and mode, PidFile, UserID and the state store come
    after smfi_opensocket(), and its SIGHUP/SIGTERM handlers are
    installed last, when it starts serving.  A SIGTERM before that
    kills it (-15, not a clean stop) and a test that looked at the pid
    file or the socket's group found them missing (both shown with a
    300 ms delay in chmod(), what a loaded machine may do to it).
    SigCgt in /proc/PID/status is the mask of the signals it
    catches."""
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('SigCgt:'):
                    mask = int(line.split()[1], 16)
                    return all(mask >> (n - 1) & 1 for n in signums)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return False


class PrivateMilter:
    def __init__(self, milter, backfillctl, config=(), window=None,
                 tmp=None, state=None):
        self.milter, self.backfillctl = milter, backfillctl
        self._tmpobj = None
        if tmp is None:
            self._tmpobj = tempfile.TemporaryDirectory(prefix='bf-milter-')
            tmp = self._tmpobj.name
        self.tmp = tmp
        self.sock = os.path.join(tmp, 'milter.sock')
        self.state = state or 'sqlite:' + os.path.join(tmp, 'state.db')
        self.log = os.path.join(tmp, 'milter.log')
        self.conf = os.path.join(tmp, 'backfill-milter.conf')
        self.stats = os.path.join(tmp, 'milter.stats')
        self.extra = list(config)
        self.window = window
        self.proc = None

    def write_config(self, extra=None):
        with open(self.conf, 'w') as f:
            f.write(f'Socket unix:{self.sock}\nState {self.state}\n'
                    f'Syslog no\nLogLevel debug\nWindowRefresh 1s\n'
                    f'StatsFile {self.stats}\n')
            for line in (self.extra if extra is None else extra):
                f.write(line + '\n')

    def ctl(self, *args, check=True):
        # umask 007, as the shipped milter unit has: SQLite makes a WAL
        # store's -wal and -shm files with the store file's mode minus
        # the umask and widens them a moment later.  Where the store is
        # shared with Dovecot's mail user through its group, a first
        # opener with umask 022 would leave them unwritable by the group
        # for that moment (a postponed merge, an unconfirmed delivery).
        env = dict(os.environ, BACKFILL_STATE=self.state)
        r = subprocess.run([self.backfillctl, *args], env=env,
                           capture_output=True, text=True, umask=0o007)
        if check and r.returncode != 0:
            raise AssertionError(f'backfillctl {args}: {r.stdout}{r.stderr}')
        return r

    def start(self):
        self.write_config()
        if self.window:
            self.ctl('window', 'open', self.window)
        # the milter writes to its own copy of the descriptor
        with open(self.log, 'a') as logf:
            self.proc = subprocess.Popen(
                [self.milter, '-f', '-c', self.conf],
                stdout=logf, stderr=logf)
        # Listening, then ready (see catches()): generous for a loaded
        # machine and the sanitizers, polled so that it costs nothing
        # when the milter is quick.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (unix_listening(self.sock, self.proc.pid)
                    and catches(self.proc.pid, signal.SIGHUP,
                                signal.SIGTERM)):
                return self
            if self.proc.poll() is not None:
                raise AssertionError('backfill-milter exited at start:\n'
                                     + self.log_text())
            time.sleep(0.02)
        raise AssertionError('backfill-milter did not listen on its socket '
                             'and catch SIGHUP and SIGTERM in 60 s:\n'
                             + self.log_text())

    def rss_kb(self):
        with open(f'/proc/{self.proc.pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
        raise AssertionError('no VmRSS')

    def cpu_seconds(self):
        """utime + stime of the milter process so far."""
        with open(f'/proc/{self.proc.pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')

    def log_text(self):
        with open(self.log, errors='replace') as f:
            return f.read()

    def stop(self):
        """SIGTERM; returns the exit code (must be 0)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return 'hung'

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self._tmpobj is not None:
            self._tmpobj.cleanup()
