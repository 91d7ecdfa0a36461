"""A small MTA side of the milter protocol (version 6), for what miltertest
cannot send: header fields over a few kB (miltertest overflows its stack),
NUL bytes, end-of-message macros as Postfix sends them."""

import socket
import struct

SMFIP_NOCONNECT = 0x1
SMFIP_NOHELO = 0x2
SMFIP_NOMAIL = 0x4
SMFIP_NORCPT = 0x8
SMFIP_NOBODY = 0x10
SMFIP_NOHDRS = 0x20
SMFIP_NOEOH = 0x40
SMFIP_NR_HDR = 0x80
SMFIP_NOUNKNOWN = 0x100
SMFIP_NODATA = 0x200
SMFIP_SKIP = 0x400
SMFIP_NR_MAIL = 0x4000
SMFIP_NR_RCPT = 0x8000
SMFIP_NR_EOH = 0x40000
SMFIP_NR_BODY = 0x80000
SMFIF_ADDHDRS = 0x1
SMFIF_CHGBODY = 0x2
SMFIF_ADDRCPT = 0x4
SMFIF_DELRCPT = 0x8
SMFIF_CHGHDRS = 0x10
SMFIF_QUARANTINE = 0x20
SMFIF_CHGFROM = 0x40
SMFIF_ADDRCPT_PAR = 0x80
SMFIF_SETSYMLIST = 0x100
ALL_ACTIONS = 0x1ff
ALL_STEPS = 0x1fffff


def raw_message(headers, body):
    """The message whose header fields and body a client sends, as the MTA
    received it (what a mailbox stores): for reference fingerprints."""
    def b(x):
        return x.encode() if isinstance(x, str) else x
    return b''.join(b(name) + b': ' + b(value) + b'\r\n'
                    for name, value in headers) + b'\r\n' + body


class MilterError(Exception):
    pass


class MilterClient:
    def __init__(self, path, timeout=60, actions=ALL_ACTIONS,
                 steps=ALL_STEPS):
        """actions: the SMFIF_* actions offered to the milter (an MTA
        that grants fewer); self.actions is what the milter asked.
        steps: the SMFIP_* protocol flags offered (without SMFIP_NR_RCPT
        the milter answers each RCPT: the answer tells that it has read
        the message's start); self.steps is what it asked."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._send(b'O', struct.pack('!III', 6, actions, steps))
        cmd, data = self._read()
        if cmd != b'O':
            raise MilterError(f'negotiation reply {cmd!r}')
        _, self.actions, self.steps = struct.unpack('!III', data[:12])
        self.reply_data = b''

    def close(self):
        try:
            self._send(b'Q', b'')
        finally:
            self.sock.close()

    def _send(self, cmd, data):
        self.sock.sendall(struct.pack('!I', len(data) + 1) + cmd + data)

    def _recv_exact(self, n):
        buf = b''
        while len(buf) < n:
            part = self.sock.recv(n - len(buf))
            if not part:
                raise MilterError('milter closed the connection')
            buf += part
        return buf

    def _read(self):
        (length,) = struct.unpack('!I', self._recv_exact(4))
        data = self._recv_exact(length)
        return data[:1], data[1:]

    def _reply(self):
        """The first non-progress reply."""
        while True:
            cmd, data = self._read()
            if cmd != b'p':
                return cmd, data

    def _step(self, cmd, data, skip_flag=0, no_reply_flag=0):
        """Sends a step unless the milter asked not to get it; reads the
        reply unless the milter said it gives none."""
        if self.steps & skip_flag:
            return b'c'
        self._send(cmd, data)
        if self.steps & no_reply_flag:
            return b'c'
        reply, _ = self._reply()
        return reply

    def mail(self, sender):
        return self._step(b'M', sender.encode() + b'\0', SMFIP_NOMAIL,
                          SMFIP_NR_MAIL)

    def rcpt(self, rcpt):
        return self._step(b'R', rcpt.encode() + b'\0', SMFIP_NORCPT,
                          SMFIP_NR_RCPT)

    def header(self, name, value):
        return self._step(b'L', name + b'\0' + value + b'\0', SMFIP_NOHDRS,
                          SMFIP_NR_HDR)

    def eoh(self):
        return self._step(b'N', b'', SMFIP_NOEOH, SMFIP_NR_EOH)

    def body(self, chunk):
        return self._step(b'B', chunk, SMFIP_NOBODY, SMFIP_NR_BODY)

    def macros(self, stage, pairs):
        data = stage
        for k, v in pairs.items():
            data += k.encode() + b'\0' + v.encode() + b'\0'
        self._send(b'D', data)

    def message(self, sender, rcpts, headers, body_chunks, queue_id=None,
                client_addr=None):
        """Sends one message; returns (reply, actions) where actions is a
        list of (kind, fields) of what the milter asked at end of
        message, in order: ('addheader', name, value), ('chgheader',
        index, name, value), ('insheader', index, name, value),
        ('addrcpt', rcpt), ('delrcpt', rcpt), ('quarantine', reason)."""
        reply = self.mail(sender)
        if reply != b'c':
            return reply, []
        for r in rcpts:
            self.rcpt(r)
        self._step(b'T', b'', SMFIP_NODATA)
        for name, value in headers:
            if isinstance(name, str):
                name = name.encode()
            if isinstance(value, str):
                value = value.encode()
            self.header(name, value)
        self.eoh()
        skipping = False
        for chunk in body_chunks:
            for i in range(0, len(chunk), 65535):
                if not skipping and self.body(chunk[i:i + 65535]) == b's':
                    skipping = True
        eom_macros = {}
        if queue_id is not None:
            eom_macros['i'] = queue_id
        if client_addr is not None:
            eom_macros['{client_addr}'] = client_addr
        if eom_macros:
            self.macros(b'E', eom_macros)
        return self.eom()

    def eom(self):
        self._send(b'E', b'')
        actions = []
        while True:
            cmd, data = self._reply()
            if cmd == b'h':
                name, value = data.split(b'\0')[:2]
                actions.append(('addheader', name.decode(), value.decode()))
            elif cmd == b'm':
                (index,) = struct.unpack('!I', data[:4])
                name, value = data[4:].split(b'\0')[:2]
                actions.append(('chgheader', index, name.decode(),
                                value.decode()))
            elif cmd == b'+':
                actions.append(('addrcpt', data.rstrip(b'\0').decode()))
            elif cmd == b'2':
                # SMFIR_ADDRCPT_PAR: the address, then ESMTP arguments
                actions.append(('addrcpt', data.split(b'\0')[0].decode()))
            elif cmd == b'-':
                actions.append(('delrcpt', data.rstrip(b'\0').decode()))
            elif cmd == b'q':
                actions.append(('quarantine', data.rstrip(b'\0').decode()))
            elif cmd == b'i':
                (index,) = struct.unpack('!I', data[:4])
                name, value = data[4:].split(b'\0')[:2]
                actions.append(('insheader', index, name.decode(),
                                value.decode()))
            else:
                # e.g. b'y' (a reply code and text): kept for the caller
                self.reply_data = data
                return cmd, actions

    @staticmethod
    def of_kind(actions, kind):
        """The first field of every action of that kind, in order."""
        return [a[1] for a in actions if a[0] == kind]

    @staticmethod
    def added(actions, name):
        for a in actions:
            if a[0] == 'addheader' and a[1].lower() == name.lower():
                return a[2]
        return None
