-- window: restore-1
-- config: Quarantine none
-- With Quarantine none a message whose every recipient already has it is
-- discarded; a message with one new recipient is not, and without a
-- QuarantineRecipient the duplicate recipients are removed without a copy
-- kept (the operator chose not to keep duplicates).
local t = dofile(LIBDIR .. "/lib.lua")

t.run("quarantine-none", function()
	local conn = t.connect()
	t.check(t.send(conn, t.message(1, {"<alice@example.org>", "<bob@example.org>"})) == SMFIR_ACCEPT, "accept")
	local fp = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	for _, r in ipairs({"alice@example.org", "bob@example.org"}) do
		local rc, out = t.ctl("dedup mark-delivered restore-1 " .. r .. " " .. fp)
		t.check(rc == 0, "mark " .. r .. ": " .. out)
	end
	t.check(t.send(conn, t.message(1, {"<bob@example.org>", "<alice@example.org>"})) == SMFIR_DISCARD,
		"all duplicates: discarded")
	t.check(not mt.eom_check(conn, MT_QUARANTINE), "not held")
	t.check(t.send(conn, t.message(1, {"<bob@example.org>", "<carol@example.org>"})) == SMFIR_ACCEPT,
		"one new recipient: accepted")
	t.check(mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"), "bob removed")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<carol@example.org>"), "carol kept")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Removed",
		"1 duplicate recipient(s) already delivered"), "removal counted")
	t.check(t.log_has("Q1: removed recipient bob@example.org",
		"not kept (Quarantine none)"), "the log says the copy is not kept")
	mt.disconnect(conn)
end)
