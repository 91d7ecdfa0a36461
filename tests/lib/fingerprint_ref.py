"""Reference implementation of FINGERPRINT.md v1 for the Python test drivers.

It is deliberately written from the spec, independently of shared/fingerprint.c,
so that the integration tests compare the C code against a second reading of
the contract instead of against itself.
"""
import hashlib
import re

SELECTED = ["message-id", "date", "from", "sender", "reply-to", "to", "cc",
            "subject", "in-reply-to", "references", "mime-version",
            "content-type", "content-transfer-encoding"]

_WSP = re.compile(rb"[ \t]+")


def _lines(raw):
    # Split on LF; a CR directly before LF belongs to the break.
    parts = raw.split(b"\n")
    out = [p[:-1] if p.endswith(b"\r") else p for p in parts[:-1]]
    if parts[-1] != b"":
        out.append(parts[-1])
    return out


def canonical(raw):
    """Return (H, B) as bytes."""
    lines = _lines(raw)
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    header, body = lines, []
    for i, line in enumerate(lines):
        if line == b"":
            header, body = lines[:i], lines[i + 1:]
            break
    fields = []  # [name or None, value]
    for line in header:
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1] += line
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t").lower() if colon > 0 else b""
        if colon <= 0 or not name or any(c <= 0x20 or c >= 0x7F for c in name):
            fields.append([None, b""])  # malformed: it and its continuations are ignored
            continue
        fields.append([name, line[colon + 1:]])
    h = b""
    for sel in SELECTED:
        for name, value in fields:
            if name == sel.encode():
                h += name + b":" + _WSP.sub(b" ", value).strip(b" ") + b"\n"
    blines = [_WSP.sub(b" ", l).rstrip(b" ") for l in body]
    while blines and blines[-1] == b"":
        blines.pop()
    b = b"".join(l + b"\n" for l in blines)
    return h, b


def fingerprint(raw):
    """Return (fingerprint_hex, hdr_key_hex) without the v1: prefix."""
    h, b = canonical(raw)
    fp = hashlib.sha256(b"backfill-f1\n" + h + b"\n" + b).hexdigest()
    hk = hashlib.sha256(b"backfill-h1\n" + h).hexdigest()
    return fp, hk
