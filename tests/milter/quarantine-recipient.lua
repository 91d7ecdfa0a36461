-- window: restore-1
-- config: QuarantineRecipient quarantine@example.org
-- A partial duplicate (some recipients already have the message, some do
-- not) with QuarantineRecipient: the duplicate recipients are removed and
-- their copy goes to the quarantine address, added once; a message that
-- is a duplicate for everyone is still held, not redirected; an MTA that
-- does not let the milter add recipients gets no removal at all.
local t = dofile(LIBDIR .. "/lib.lua")

local QUARANTINE = "<quarantine@example.org>"

t.run("quarantine-recipient", function()
	local conn = t.connect()
	t.check(t.send(conn, t.message(1, {"<bob@example.org>", "<Carol@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(mt.test_action(conn, SMFIF_ADDRCPT), "the milter asks to add recipients")
	local fp = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	for _, r in ipairs({"bob@example.org", "carol@example.org"}) do
		local rc, out = t.ctl("dedup mark-delivered restore-1 " .. r .. " " .. fp)
		t.check(rc == 0, "mark " .. r .. ": " .. out)
	end

	-- bob and carol have it, dave does not.
	local msg = t.message(1, {"<bob@example.org>", "<dave@example.org>", "<Carol@example.org>"})
	msg.qid = "QPART"
	t.check(t.send(conn, msg) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"), "bob removed")
	t.check(mt.eom_check(conn, MT_RCPTDELETE, "<Carol@example.org>"),
		"carol removed, exactly as received")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<dave@example.org>"), "dave kept")
	t.check(mt.eom_check(conn, MT_RCPTADD, QUARANTINE), "the copy goes to the quarantine address")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Removed",
		"2 duplicate recipient(s) already delivered"), "removal counted in a header")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate"),
		"dave's copy is not a duplicate")
	t.check(not mt.eom_check(conn, MT_QUARANTINE), "not held")
	for _, r in ipairs({"bob@example.org", "carol@example.org"}) do
		t.check(t.log_has("QPART: removed recipient " .. r,
			"this copy went to " .. QUARANTINE, fp),
			"the log names " .. r .. ", the queue id and where the copy went")
	end
	-- One log line per removed recipient.  (miltertest cannot count
	-- actions: test_protocol.py checks that the address is added once,
	-- whatever the number removed.)
	local _, adds = t.log_text():gsub("went to " .. QUARANTINE:gsub("%p", "%%%0"), "")
	t.check(adds == 2, "one log line per removed recipient, got " .. adds)

	-- A duplicate for every recipient is held, as without the setting.
	msg = t.message(1, {"<bob@example.org>"})
	msg.qid = "QALL"
	t.check(t.send(conn, msg) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_QUARANTINE), "held")
	t.check(not mt.eom_check(conn, MT_RCPTADD, QUARANTINE), "no quarantine recipient for a held message")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"), "held with its recipient")
	mt.disconnect(conn)

	-- An MTA that does not allow adding recipients: the copy cannot be
	-- kept, so nobody is removed.
	conn = t.connect()
	-- (miltertest takes version, steps, actions, whatever its manual says)
	local err = mt.negotiate(conn, nil, nil, SMFIF_ADDHDRS + SMFIF_CHGHDRS +
		SMFIF_DELRCPT + SMFIF_QUARANTINE)
	t.check(err == nil, "negotiate: " .. tostring(err))
	t.check(not mt.test_action(conn, SMFIF_ADDRCPT), "add recipient not granted")
	msg = t.message(1, {"<bob@example.org>", "<erin@example.org>"})
	msg.qid = "QNOADD"
	t.check(t.send(conn, msg) == SMFIR_ACCEPT, "accept")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"), "bob kept")
	t.check(not mt.eom_check(conn, MT_RCPTADD, QUARANTINE), "nothing added")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate", "confirmed"),
		"delivered to all, tagged confirmed")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Removed"), "nothing removed")
	t.check(t.log_has("QNOADD: could not add QuarantineRecipient"),
		"the log says why")
	mt.disconnect(conn)
end)
