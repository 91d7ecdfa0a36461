-- Outside a window (none opened) a message passes untouched and nothing
-- is recorded; opening a window takes effect within WindowRefresh.
local t = dofile(LIBDIR .. "/lib.lua")

t.run("outside", function()
	local conn = t.connect()
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(not mt.eom_check(conn, MT_HDRADD), "no header added")
	t.check(not mt.eom_check(conn, MT_HDRDELETE), "no header removed")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<alice@example.org>"), "no recipient removed")
	t.check(not mt.eom_check(conn, MT_QUARANTINE), "not held")
	local rc, out = t.ctl("dedup stats")
	t.check(out:match("records (%d+)") == "0", "nothing recorded: " .. out)

	rc, out = t.ctl("window open late")
	t.check(rc == 0, "window open: " .. out)
	mt.sleep(1.2)
	t.check(t.send(conn, t.message(2, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Window", "late"), "window noticed")
	mt.disconnect(conn)
end)
