-- config: State sqlite:@TMP@/no/such/dir/state.db
-- The state store cannot be opened: every message is accepted, tagged
-- X-Backfill-Dedup: unchecked, forged headers still removed, and the
-- milter logs what to fix.
local t = dofile(LIBDIR .. "/lib.lua")

t.run("unchecked", function()
	local conn = t.connect()
	for n = 1, 3 do
		local msg = t.message(n, {"<alice@example.org>", "<bob@example.org>"})
		table.insert(msg.headers, {"X-Backfill-Dedup", "checked"})
		t.check(t.send(conn, msg) == SMFIR_ACCEPT, "accepted")
		t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Dedup", "unchecked"), "tagged unchecked")
		t.check(mt.eom_check(conn, MT_HDRDELETE, "X-Backfill-Dedup"), "forged header removed")
		t.check(not mt.eom_check(conn, MT_QUARANTINE), "not held")
		t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<alice@example.org>"), "not removed")
	end
	mt.disconnect(conn)
	local f = io.open(MILTER_LOG)
	local log = f:read("*a")
	f:close()
	t.check(log:find("cannot read the restore window from the state store", 1, true),
		"the log says the store is unreadable")
end)
