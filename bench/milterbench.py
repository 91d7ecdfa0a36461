"""The method the milter throughput benchmarks share
(bench/milter-throughput.py, bench/milter-redis-throughput.py): private
Postfix instances delivering to discard:, smtp-source sending N messages
over S parallel sessions (a share of them one fixed duplicate), the clock
stopping when the queue is empty again, rounds that rotate the order of
the instances, and the median of the per-round ratios against the
instance without a milter."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'milter'))

from postfix import Postfix, make_traversable  # noqa: E402

SMTP_SOURCE = shutil.which('smtp-source') or '/usr/sbin/smtp-source'

DUP_MESSAGE = (b'Message-ID: <always-the-same@example.net>\n'
               b'Date: Sat, 21 Nov 2026 10:00:00 +0000\n'
               b'From: Sender <sender@example.net>\n'
               b'To: <rcpt@example.org>\n'
               b'Subject: the same message again\n'
               b'\n' + b'duplicate body line ........................\n' * 40)


def add_arguments(ap):
    """The options and arguments of both benchmarks."""
    ap.add_argument('--messages', type=int, default=2000,
                    help='messages per run (a round is one run per instance)')
    ap.add_argument('--sessions', type=int, default=10)
    ap.add_argument('--size', type=int, default=2000)
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--null-milter', metavar='PATH',
                    help='build/bench/null-milter: add the reference '
                         'instance with the cheapest libmilter filter')
    ap.add_argument('milter')
    ap.add_argument('backfillctl')


def make_tmp(prefix):
    """A temp dir Postfix can traverse, and the duplicate's file in it."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    make_traversable(tmp)
    dup_file = os.path.join(tmp, 'dup.eml')
    with open(dup_file, 'wb') as f:
        f.write(DUP_MESSAGE)
    return tmp, dup_file


class NullMilter:
    """bench/null-milter on a unix socket in tmp: the reference
    instance, the cheapest filter libmilter allows."""

    def __init__(self, path, tmp):
        self.path = path
        self.sock = os.path.join(tmp, 'null-milter.sock')
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.path, 'unix:' + self.sock])
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit('null-milter did not start')
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def discard_instances(a, tmp, named, null_name):
    """The Postfix instances of the rounds, all delivering to discard::
    one for each (name, Postfix name, milter socket or None) of named,
    then with --null-milter ('null', Postfix null_name) on a null-milter
    started here.  Returns (instances, the null-milter or None)."""
    instances = [(name, Postfix(pf_name, relay_transport='discard:',
                                milters='unix:' + sock if sock else None))
                 for name, pf_name, sock in named]
    if not a.null_milter:
        return instances, None
    null = NullMilter(a.null_milter, tmp)
    try:
        null.start()
    except BaseException:
        null.stop()
        raise
    instances.append(('null', Postfix(null_name, relay_transport='discard:',
                                      milters='unix:' + null.sock)))
    return instances, null


def start_instances(instances, a, dup_file):
    """Starts every Postfix and warms it up (process pools, page cache,
    the store's file)."""
    for _, pf in instances:
        pf.start()
    for _, pf in instances:
        run(pf, 200, a.sessions, a.size, 0, dup_file)


def stop_all(instances, milters, null):
    for _, pf in instances:
        pf.stop()
        pf.cleanup()
    for m in milters:
        m.stop()
    if null is not None:
        null.stop()


def queue_files(pf):
    n = 0
    for sub in ('maildrop', 'incoming', 'active', 'deferred'):
        for _, _, files in os.walk(os.path.join(pf.queue_dir, sub)):
            n += len(files)
    return n


def source(pf, count, sessions, size, dup_file=None):
    cmd = [SMTP_SOURCE, '-s', str(sessions), '-m', str(count),
           '-f', 'sender@example.net', '-t', 'rcpt@example.org']
    if dup_file:
        cmd += ['-F', dup_file]
    else:
        cmd += ['-l', str(size)]
    cmd.append('127.0.0.1:%d' % pf.port)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run(pf, count, sessions, size, dup_pct, dup_file):
    """Messages per second from the first connection to an empty queue."""
    start = time.monotonic()
    if dup_pct == 0:
        source(pf, count, sessions, size)
    else:
        dups = count * dup_pct // 100
        if sessions < 2:
            source(pf, dups, 1, size, dup_file)
            source(pf, count - dups, 1, size)
        else:
            half = sessions // 2
            t = threading.Thread(target=source,
                                 args=(pf, dups, half, size, dup_file))
            t.start()
            source(pf, count - dups, sessions - half, size)
            t.join()
    while queue_files(pf) > 0:
        time.sleep(0.05)
    return count / (time.monotonic() - start)


def measure(instances, a, dup_pct, dup_file, results):
    """a.rounds rounds at dup_pct% duplicates, each one run per instance,
    the order rotated by one every round: the rates go to
    results[(dup_pct, name)]."""
    for r in range(a.rounds):
        k = r % len(instances)
        order = instances[k:] + instances[:k]
        for name, pf in order:
            rate = run(pf, a.messages, a.sessions, a.size, dup_pct, dup_file)
            results.setdefault((dup_pct, name), []).append(rate)
            print('  %d%% duplicates, %s, round %d: %.0f msg/s'
                  % (dup_pct, name, r + 1, rate), file=sys.stderr)


def ratio_line(results, dup_pct, labels):
    """The report line of dup_pct: the median rate without a milter, then
    for each (name, label) measured its median rate and the median of its
    per-round ratios (each ratio too); and those median ratios by
    name."""
    base = results[(dup_pct, 'without')]
    line = '%3d%% duplicates: without milter %4.0f msg/s' % (
        dup_pct, statistics.median(base))
    medians = {}
    for name, label in labels:
        if (dup_pct, name) not in results:
            continue
        rates = results[(dup_pct, name)]
        ratios = [x / b for x, b in zip(rates, base)]
        medians[name] = statistics.median(ratios)
        line += '; %s %4.0f msg/s, ratio %.2f (%s)' % (
            label, statistics.median(rates), medians[name],
            ' '.join('%.2f' % x for x in ratios))
    return line, medians


def postfix_version():
    return subprocess.run(['postconf', '-dh', 'mail_version'],
                          capture_output=True, text=True).stdout.strip()
