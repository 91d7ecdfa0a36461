-- window: restore-1
-- config: DuplicateAction tag
-- With DuplicateAction tag a confirmed duplicate is delivered, tagged.
local t = dofile(LIBDIR .. "/lib.lua")

t.run("tag-only", function()
	local conn = t.connect()
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	local fp = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	local rc, out = t.ctl("dedup mark-delivered restore-1 alice@example.org " .. fp)
	t.check(rc == 0, "mark: " .. out)
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate", "confirmed"), "tagged confirmed")
	t.check(not mt.eom_check(conn, MT_QUARANTINE), "not held")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<alice@example.org>"), "not removed")
	mt.disconnect(conn)
end)
