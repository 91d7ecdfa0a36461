#!/usr/bin/python3
"""backfill-milter as a daemon: config errors name FILE:LINE and exit 2,
SIGHUP reloads (a bad file keeps the running config), SIGTERM lets a
message in progress finish, the socket gets its mode and group, UserID
drops privileges, PidFile is written and removed.

Environment: BACKFILL_MILTER and BACKFILLCTL (paths of the built binaries).
"""

import grp
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from milterclient import (ALL_STEPS, SMFIP_NR_RCPT,  # noqa: E402
                          MilterClient)
from milterproc import PrivateMilter  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')

MESSAGE = [('Message-ID', '<m1@example.net>'), ('Subject', 'hello'),
           ('From', 'sender@example.net')]


def wait_for(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


class ConfigErrors(unittest.TestCase):
    def check(self, lines, line_no, words):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'bad.conf')
            with open(path, 'w') as f:
                f.write('\n'.join(lines) + '\n')
            for args in (['-n', '-c', path], ['-f', '-c', path]):
                r = subprocess.run([MILTER, *args], capture_output=True,
                                   text=True, timeout=10)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(f'{path}:{line_no}:', r.stderr)
                for w in words:
                    self.assertIn(w, r.stderr)

    def test_unknown_key(self):
        self.check(['# comment', 'Socket unix:/tmp/x.sock', '',
                    'DuplicatAction remove'], 4, ['DuplicatAction'])

    def test_bad_values(self):
        self.check(['DuplicateAction delete'], 1, ['remove', 'tag'])
        self.check(['Syslog', 'Quarantine maybe'], 1, ['Syslog'])
        self.check(['Quarantine maybe'], 1, ['hold', 'none'])
        self.check(['LogLevel info', 'MinAge soon'], 2, ['MinAge'])
        self.check(['SocketMode 999'], 1, ['SocketMode'])
        self.check(['Socket tcp:25'], 1, ['Socket'])
        # no port, no host after '@': libmilter failed only at start
        for bad in ('inet:', 'inet:@127.0.0.1', 'inet6:', 'inet:8891@',
                    'inet:88 91@localhost'):
            self.check(['Socket ' + bad], 1, ['Socket'])
        self.check(['ConfirmDelivery perhaps'], 1, ['ConfirmDelivery'])
        self.check(['DedupTTL 0'], 1, ['DedupTTL'])
        self.check(['Window sometimes'], 1, ['auto', 'off'])
        self.check(['State /var/lib/backfill/state.db'], 1, ['State'])
        # each passed -n before and was found only when the store was
        # opened: the milter then accepted all mail unchecked
        for bad in ('State :', 'State sqlite:', 'State bogus:/x',
                    'State sqlite:/x.db?busy_timeout=soon',
                    'State redis://', 'State redis://h:99999'):
            self.check([bad], 1, ['State'])
        self.check(['PidFile run/milter.pid'], 1, ['PidFile', 'absolute'])
        # opened relative to "/" once the daemon detached (review s8 L6)
        for bad in ('State sqlite:state.db', 'State sqlite:var/x.db?busy_timeout=5'):
            self.check([bad], 1, ['State', 'absolute'])
        for bad in ('@example.org', '<@example.org>', 'quarantine',
                    'quarantine@', 'q uarantine@example.org',
                    'q\x01@example.org', '<quarantine@example.org',
                    'quarantine@example.org>', 'a<b>@example.org',
                    'a@b@example.org', '<>',
                    # Postfix would parse these, differently from what
                    # they look like, or differently on each MX: a list
                    # whose first address "ops" gets each host's
                    # $myorigin, quoted or commented local parts, 8-bit
                    # and IDN addresses.
                    'ops,q@example.org', 'q@exämple.org', 'qé@example.org',
                    '"q"@example.org', '"q q"@example.org',
                    'q(comment)@example.org', 'q;r@example.org',
                    'q:r@example.org', 'q\\r@example.org',
                    'q@example.org (comment)', 'q@example.org,r@example.org',
                    # routing characters: percent hack, bang paths
                    'q%r@example.org', 'r!q@example.org',
                    # dot-atom and LDH rules
                    'a..b@example.org', '.q@example.org', 'q.@example.org',
                    'q@-bad.example', 'q@bad-.example', 'q@example..org',
                    'q@example.org.', 'q@.example.org', 'q@exa_mple.org',
                    'q@' + 'a' * 64 + '.example.org',
                    'q@' + '.'.join(['abcdefghi'] * 26),
                    # address literals: IPv4, or IPv6 with its tag
                    'q@[]', 'q@[1.2.3]', 'q@[2001:db8::1]', 'q@[IPv6:zz::1]',
                    'q@[example.org]', 'q@[1.2.3.4'):
            self.check(['LogLevel info', 'QuarantineRecipient ' + bad], 2,
                       ['QuarantineRecipient'])

    def test_quarantine_recipient_accepted(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'good.conf')
            for value in ('quarantine@example.org',
                          '<Backfill.Quarantine+dup@example.org>',
                          "o'brien.q-1@mail-1.example.org",
                          '$&*+-/=?^_`{|}~@example.org', 'q@localhost',
                          'q@xn--exmple-cua.org', 'q@[192.0.2.1]',
                          '<q@[IPv6:2001:db8::1]>',
                          'q@' + '.'.join(['a' * 63] * 3) + '.' + 'b' * 61):
                with open(path, 'w') as f:
                    f.write(f'QuarantineRecipient {value}\n')
                r = subprocess.run([MILTER, '-n', '-c', path],
                                   capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_missing_file_and_good_file(self):
        r = subprocess.run([MILTER, '-n', '-c', '/nonexistent/bf.conf'],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn('/nonexistent/bf.conf', r.stderr)
        sample = os.path.join(HERE, '..', '..', 'conf.d',
                              'backfill-milter.conf')
        if os.path.exists(sample):
            r = subprocess.run([MILTER, '-n', '-c', sample],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([MILTER, '-x'], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)


class Daemon(unittest.TestCase):
    def send(self, m, qid):
        c = MilterClient(m.sock)
        try:
            return c.message('<s@example.net>', ['<alice@example.org>'],
                             MESSAGE, [b'body\r\n'], queue_id=qid)
        finally:
            c.close()

    def test_reload(self):
        with PrivateMilter(MILTER, BACKFILLCTL, window='w1',
                           config=['DuplicateAction tag']) as m:
            reply, actions = self.send(m, 'A1')
            fp = MilterClient.added(actions, 'X-Backfill-Fingerprint')
            m.ctl('dedup', 'mark-delivered', 'w1', 'alice@example.org', fp)
            reply, actions = self.send(m, 'A2')
            self.assertEqual(MilterClient.added(
                actions, 'X-Backfill-Duplicate'), 'confirmed')
            self.assertNotIn('quarantine', [a[0] for a in actions])

            m.write_config(['DuplicateAction remove'])
            os.kill(m.proc.pid, signal.SIGHUP)
            self.assertTrue(wait_for(
                lambda: 'configuration reloaded' in m.log_text()))
            reply, actions = self.send(m, 'A3')
            self.assertEqual(reply, b'a')
            self.assertIn('quarantine', [a[0] for a in actions], actions)

            # A broken file: logged with FILE:LINE, old config kept.
            m.write_config(['DuplicateAction tag', 'Bogus 1'])
            os.kill(m.proc.pid, signal.SIGHUP)
            self.assertTrue(wait_for(
                lambda: 'reload failed' in m.log_text()))
            self.assertIn(f'{m.conf}:8: unknown key', m.log_text())
            reply, actions = self.send(m, 'A4')
            self.assertIn('quarantine', [a[0] for a in actions], actions)
            self.assertIsNone(m.proc.poll())

            # A burst of SIGHUPs (logrotate and an operator at once):
            # none may reach libmilter's own handler, which would stop
            # the milter.
            m.write_config(['DuplicateAction remove'])
            deadline = time.time() + 0.5
            while time.time() < deadline:
                os.kill(m.proc.pid, signal.SIGHUP)
            time.sleep(1)
            self.assertIsNone(m.proc.poll(), 'a SIGHUP stopped the milter')
            reply, actions = self.send(m, 'A5')
            self.assertIn('quarantine', [a[0] for a in actions], actions)
            self.assertNotIn('libmilter stopped', m.log_text())
            self.assertEqual(m.stop(), 0)

    def test_sigterm_finishes_message_in_progress(self):
        with PrivateMilter(MILTER, BACKFILLCTL, window='w1') as m:
            # Start a message, stop the milter, then finish it.  RCPT
            # is answered (no SMFIP_NR_RCPT offered): once it is, the
            # milter has begun the message (a fixed 0.3 s for it to
            # read MAIL, which gets no answer, was a guess: had it not,
            # the milter stopped at once and the test passed without
            # testing the wait).
            c = MilterClient(m.sock, steps=ALL_STEPS & ~SMFIP_NR_RCPT)
            c.mail('<s@example.net>')
            self.assertEqual(c.rcpt('<alice@example.org>'), b'c')
            m.proc.send_signal(signal.SIGTERM)
            self.assertTrue(wait_for(
                lambda: '1 with a message in progress' in m.log_text(),
                timeout=30), m.log_text())
            time.sleep(0.5)
            self.assertIsNone(m.proc.poll(), 'exited with a message open')
            c.header(b'Subject', b'x')
            c.eoh()
            reply, actions = c.eom()
            self.assertEqual(reply, b'a')
            self.assertTrue(MilterClient.added(actions,
                                               'X-Backfill-Fingerprint'),
                            'message was checked and tagged')
            c.close()
            self.assertEqual(m.proc.wait(timeout=30), 0)
            self.assertIn('stopped', m.log_text())

    def test_socket_mode_group_user_pidfile(self):
        tmp = tempfile.mkdtemp(prefix='bf-milter-priv-')
        os.chmod(tmp, 0o755)
        pid_file = os.path.join(tmp, 'milter.pid')
        group = grp.getgrgid(os.getgid()).gr_name
        for name in ('postfix', 'mail', 'daemon'):
            try:
                grp.getgrnam(name)
                group = name
                break
            except KeyError:
                pass
        user = pwd.getpwnam('nobody')
        m = PrivateMilter(MILTER, BACKFILLCTL, tmp=tmp, config=[
            'SocketMode 0660', f'SocketGroup {group}',
            f'PidFile {pid_file}', 'UserID nobody', 'Window off'])
        try:
            m.start()
            st = os.stat(m.sock)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
            self.assertEqual(st.st_gid, grp.getgrnam(group).gr_gid)
            with open(pid_file) as f:
                self.assertEqual(int(f.read()), m.proc.pid)

            def uids():
                with open(f'/proc/{m.proc.pid}/status') as f:
                    line = [l for l in f if l.startswith('Uid:')][0]
                return set(line.split()[1:])
            # The socket exists a moment before privileges are dropped.
            wait_for(lambda: uids() == {str(user.pw_uid)})
            self.assertEqual(uids(), {str(user.pw_uid)})
            reply, actions = self.send(m, 'P1')
            self.assertEqual(reply, b'a')
            self.assertEqual(m.stop(), 0)
        finally:
            m.stop()
            subprocess.run(['rm', '-rf', tmp])

    def test_pidfile_symlink_refused(self):
        # A symlink planted where the pid file goes (as root, before the
        # privileges are dropped) must not truncate what it points to.
        with tempfile.TemporaryDirectory(prefix='bf-milter-pid-') as tmp:
            victim = os.path.join(tmp, 'victim')
            with open(victim, 'w') as f:
                f.write('precious\n')
            pid_file = os.path.join(tmp, 'milter.pid')
            os.symlink(victim, pid_file)
            m = PrivateMilter(MILTER, BACKFILLCTL, tmp=tmp, config=[
                f'PidFile {pid_file}', 'Window off'])
            try:
                m.start()   # the socket may appear before the refusal
            except AssertionError:
                pass
            self.assertEqual(m.proc.wait(timeout=30), 2)
            with open(victim) as f:
                self.assertEqual(f.read(), 'precious\n')
            self.assertIn('is a symbolic link: refused', m.log_text())
            m.stop()

    def test_second_milter_on_the_same_socket_refused(self):
        # A second milter started by hand with the service's config took
        # its socket (libmilter removes any socket there) and left the
        # first one running where Postfix could not reach it: with
        # default_action=accept every message then passed unchecked, its
        # forged X-Backfill-* headers with it.
        with PrivateMilter(MILTER, BACKFILLCTL, window='w1') as m:
            r = subprocess.run([MILTER, '-f', '-c', m.conf],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn('another milter is listening there', r.stderr)
            reply, actions = self.send(m, 'SECOND1')
            self.assertEqual(reply, b'a', actions)
            self.assertIsNotNone(
                MilterClient.added(actions, 'X-Backfill-Fingerprint'))
        # a file that is not a socket is not the milter's to remove
        with tempfile.TemporaryDirectory(prefix='bf-milter-sock-') as tmp:
            path = os.path.join(tmp, 'milter.conf.typo')
            with open(path, 'w') as f:
                f.write('precious\n')
            conf = os.path.join(tmp, 'milter.conf')
            with open(conf, 'w') as f:
                f.write(f'Socket unix:{path}\nSyslog no\nWindow off\n'
                        f'StatsFile {tmp}/stats\n')
            r = subprocess.run([MILTER, '-f', '-c', conf],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn('not a socket', r.stderr)
            with open(path) as f:
                self.assertEqual(f.read(), 'precious\n')
        # a dead socket left by a killed milter is taken over
        with PrivateMilter(MILTER, BACKFILLCTL, window='w1') as m:
            m.proc.kill()
            m.proc.wait()
            self.assertTrue(os.path.exists(m.sock))
            m.start()
            reply, actions = self.send(m, 'AFTERKILL')
            self.assertEqual(reply, b'a', actions)


class OperatorTest(unittest.TestCase):
    """Issue 18: counters per MX in one command, the time of the last
    connection from the MTA, UMask and SyslogFacility as in opendkim,
    log lines that start with the queue id."""

    def test_stats_umask_and_queue_id_lines(self):
        with tempfile.TemporaryDirectory(prefix='bf-milter-ops-') as tmp:
            os.chmod(tmp, 0o755)
            pid_file = os.path.join(tmp, 'milter.pid')
            m = PrivateMilter(MILTER, BACKFILLCTL, tmp=tmp,
                              window='restore-1', config=[
                                  'UMask 007', f'PidFile {pid_file}'])
            m.start()
            try:
                self.assertEqual(stat.S_IMODE(os.stat(m.sock).st_mode),
                                 0o770)
                self.assertEqual(stat.S_IMODE(os.stat(pid_file).st_mode),
                                 0o640)
                # StatsFile is first written once the milter serves (a
                # moment after start() saw it ready: wait for it)
                def stats():
                    return subprocess.run([MILTER, '-s', '-c', m.conf],
                                          capture_output=True, text=True)
                self.assertTrue(wait_for(lambda: stats().returncode == 0),
                                stats().stderr)
                r = stats()
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn('last_connection never', r.stdout)
                c = MilterClient(m.sock)
                for qid, extra in (('OPS1', []),
                                   ('OPS2', [('X-Backfill-Window', 'x')])):
                    reply, _ = c.message(
                        '<sender@example.net>', ['<alice@example.org>'],
                        MESSAGE + extra, [b'body\r\n'], queue_id=qid)
                    self.assertEqual(reply, b'a')
                # the same message again: a duplicate, held
                reply, actions = c.message(
                    '<sender@example.net>', ['<alice@example.org>'],
                    MESSAGE, [b'body\r\n'], queue_id='OPS3')
                c.close()
                m.ctl('dedup', 'mark-delivered', 'restore-1',
                      'alice@example.org',
                      MilterClient.added(actions, 'X-Backfill-Fingerprint'))
                c = MilterClient(m.sock)
                reply, actions = c.message(
                    '<sender@example.net>', ['<alice@example.org>'],
                    MESSAGE, [b'body\r\n'], queue_id='OPS4')
                c.close()
                self.assertIn(('quarantine',), [a[:1] for a in actions])
                # rewritten every 10 s
                counters = {}
                deadline = time.time() + 25
                while time.time() < deadline and \
                        counters.get('seen') != '4':
                    time.sleep(1)
                    r = subprocess.run([MILTER, '-s', '-c', m.conf],
                                       capture_output=True, text=True)
                    counters = dict(line.split(' ', 1)[:2] for line in
                                    r.stdout.splitlines() if ' ' in line)
                print(r.stdout, file=sys.stderr)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(counters['seen'], '4')
                self.assertEqual(counters['tagged'], '4')
                self.assertEqual(counters['held'], '1')
                self.assertEqual(counters['forged_removed'], '1')
                self.assertEqual(counters['connections'], '2')
                self.assertEqual(counters['store_errors'], '0')
                self.assertRegex(counters['last_connection'],
                                 r'^\d{4}-\d\d-\d\dT.*Z \(\d+s ago\)$')
                log = m.log_text()
                self.assertIn('info: OPS4: held: duplicate', log)
                self.assertIn('info: OPS2: removed 1 forged', log)
            finally:
                self.assertEqual(m.stop(), 0)
            # a milter that is not running: -s says so
            r = subprocess.run([MILTER, '-s', '-c', m.conf + '.none'],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)

    def test_syslog_facility(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'f.conf')
            for value, rc in (('local3', 0), ('mail', 0), ('LOCAL7', 0),
                              ('kern', 2), ('local8', 2)):
                with open(path, 'w') as f:
                    f.write(f'SyslogFacility {value}\n')
                r = subprocess.run([MILTER, '-n', '-c', path],
                                   capture_output=True, text=True)
                self.assertEqual(r.returncode, rc, (value, r.stderr))
                if rc:
                    self.assertIn(f'{path}:1: SyslogFacility', r.stderr)


if __name__ == '__main__':
    unittest.main(verbosity=2)
