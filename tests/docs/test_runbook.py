#!/usr/bin/python3
"""docs/runbook.md cannot rot: the commands of its `sh demo step=N` blocks
are, line by line and in order, the commands demo/runbook.py's RUNBOOK
lists (which the demo runs and checks it ran), and each step number is a
"## N." section of the runbook, in ascending order."""
import os
import re
import sys
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "demo"))
import runbook  # noqa: E402

RUNBOOK_MD = os.path.join(TOP, "docs", "runbook.md")


def tagged_commands(text):
    """[(step, command)] of every `sh demo step=N` block, comments and
    empty lines left out."""
    out = []
    for m in re.finditer(r"^```sh demo step=(\d+)\n(.*?)^```", text, re.M | re.S):
        for line in m.group(2).splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                out.append((int(m.group(1)), line))
    return out


def section_of(text, pos):
    heads = [(m.start(), int(m.group(1)))
             for m in re.finditer(r"^## (\d+)\. ", text, re.M) if m.start() < pos]
    return heads[-1][1] if heads else None


class RunbookAgreesWithDemo(unittest.TestCase):
    def setUp(self):
        with open(RUNBOOK_MD) as f:
            self.text = f.read()

    def test_same_commands_same_order(self):
        doc = tagged_commands(self.text)
        demo = [(entry[0], entry[2]) for entry in runbook.RUNBOOK]
        self.assertTrue(doc, "no `sh demo step=N` block in docs/runbook.md")
        self.assertEqual(doc, demo,
                         "docs/runbook.md's `sh demo` blocks and demo/runbook.py's "
                         "RUNBOOK differ: change both")

    def test_blocks_sit_in_their_step(self):
        for m in re.finditer(r"^```sh demo step=(\d+)$", self.text, re.M):
            self.assertEqual(section_of(self.text, m.start()), int(m.group(1)),
                             "block tagged step=%s outside section %s" % (m.group(1), m.group(1)))
        steps = [int(n) for n in re.findall(r"^## (\d+)\. ", self.text, re.M)]
        self.assertEqual(steps, sorted(steps))
        self.assertEqual(steps, list(range(steps[0], steps[0] + len(steps))))

    def test_every_step_says_how_to_check_and_back_out(self):
        parts = re.split(r"^## \d+\. ", self.text, flags=re.M)[1:]
        for i, part in enumerate(parts):
            if i == 0:      # the names used below
                continue
            self.assertIn("**It worked if**", part, "step %d" % i)
            self.assertIn("**Back out:**", part, "step %d" % i)


if __name__ == "__main__":
    unittest.main()
