-- window: restore-1
-- New, suspected and confirmed duplicates with the defaults
-- (DuplicateAction remove, Quarantine hold, ConfirmDelivery yes, no
-- QuarantineRecipient), and a message to three recipients of whom two
-- already have it.
local t = dofile(LIBDIR .. "/lib.lua")

local function no_quarantine(conn)
	t.check(not mt.eom_check(conn, MT_QUARANTINE), "not held")
end

t.run("duplicates", function()
	local conn = t.connect()

	-- First copy: new.
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	local fp = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	t.check(fp ~= nil, "fingerprint added")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate"), "first copy is new")

	-- Same message again before any delivery is confirmed: delivered,
	-- tagged suspected, never removed.
	t.check(t.send(conn, t.message(1, {"<ALICE@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate", "suspected"),
		"unconfirmed repeat tagged suspected")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<ALICE@example.org>"), "not removed")
	no_quarantine(conn)
	t.check(mt.getheader(conn, "X-Backfill-Fingerprint", 0) == fp, "same fingerprint")

	-- The first copy is delivered (what the Dovecot plugin records at
	-- LMTP time): a further repeat to the only recipient is held.
	local rc, out = t.ctl("dedup mark-delivered restore-1 alice@example.org " .. fp)
	t.check(rc == 0, "mark delivered: " .. out)
	t.check(t.send(conn, t.message(1, {"<Alice@Example.org>"})) == SMFIR_ACCEPT,
		"held message is accepted into the hold queue")
	t.check(mt.eom_check(conn, MT_QUARANTINE), "confirmed duplicate held")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate", "held"), "tagged held")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<Alice@Example.org>"),
		"a held message keeps its recipient, so that postsuper -H delivers it")

	-- Three recipients, two of them already have message 2.  Without a
	-- QuarantineRecipient a removed recipient's copy would be kept
	-- nowhere: all three get it, tagged (quarantine-recipient.lua has
	-- the removal).
	t.check(t.send(conn, t.message(2, {"<bob@example.org>", "<Carol@example.org>"})) == SMFIR_ACCEPT, "accept")
	local fp2 = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	rc, out = t.ctl("dedup mark-delivered restore-1 bob@example.org " .. fp2)
	t.check(rc == 0, "mark bob: " .. out)
	rc, out = t.ctl("dedup mark-delivered restore-1 carol@example.org " .. fp2)
	t.check(rc == 0, "mark carol: " .. out)
	local msg2 = t.message(2, {"<bob@example.org>", "<dave@example.org>", "<Carol@example.org>"})
	msg2.qid = "Q2B"
	t.check(t.send(conn, msg2) == SMFIR_ACCEPT, "accept")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"), "bob kept")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<Carol@example.org>"), "carol kept")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<dave@example.org>"), "dave kept")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Removed"), "nothing removed")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate", "confirmed"),
		"partial duplicate delivered, tagged confirmed")
	no_quarantine(conn)
	t.check(t.log_has("Q2B:", "2 confirmed duplicate(s), 0 removed",
		"no QuarantineRecipient is set"), "the log says why nothing was removed")

	-- The same address twice in one message is one key, not a duplicate.
	t.check(t.send(conn, t.message(3, {"<erin@example.org>", "<ERIN@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate"),
		"two spellings of one address in one message")

	-- Another window: the same message is new there.
	rc, out = t.ctl("window open restore-2 --replace")
	t.check(rc == 0, "open restore-2: " .. out)
	mt.sleep(1.2)
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Window", "restore-2"), "new window")
	no_quarantine(conn)
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate"), "new in restore-2")
	mt.disconnect(conn)
end)
