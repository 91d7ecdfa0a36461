-- window: restore-1
-- Incoming X-Backfill-* headers are removed, inside a window and outside,
-- whatever their case: nobody outside may forge what the milter writes
-- (a forged fingerprint would let the plugin confirm a delivery that
-- never happened).
local t = dofile(LIBDIR .. "/lib.lua")

local function forged_message(n)
	local msg = t.message(n, {"<alice@example.org>"})
	table.insert(msg.headers, {"X-Backfill-Fingerprint", "v1:" .. string.rep("0", 64)})
	table.insert(msg.headers, {"X-Backfill-Window", "evil"})
	table.insert(msg.headers, {"x-backfill-window", "evil2"})
	table.insert(msg.headers, {"X-BACKFILL-DEDUP", "checked"})
	return msg
end

local function check_removed(conn)
	t.check(mt.eom_check(conn, MT_HDRDELETE, "X-Backfill-Fingerprint"),
		"forged X-Backfill-Fingerprint removed")
	t.check(mt.eom_check(conn, MT_HDRDELETE, "X-Backfill-Window"),
		"forged X-Backfill-Window removed")
	t.check(mt.eom_check(conn, MT_HDRDELETE, "X-BACKFILL-DEDUP"),
		"forged X-BACKFILL-DEDUP removed")
end

t.run("forged", function()
	local conn = t.connect()
	t.check(t.send(conn, forged_message(1)) == SMFIR_ACCEPT, "accepted")
	check_removed(conn)
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Window", "restore-1"),
		"our own X-Backfill-Window added")
	local fp = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	t.check(fp ~= "v1:" .. string.rep("0", 64), "our own fingerprint, not the forged one")
	mt.disconnect(conn)

	-- Outside a window: removed all the same, nothing added.
	local rc, out = t.ctl("window close")
	t.check(rc == 0, "window close: " .. out)
	mt.sleep(1.2) -- WindowRefresh 1s
	conn = t.connect()
	t.check(t.send(conn, forged_message(2)) == SMFIR_ACCEPT, "accepted")
	check_removed(conn)
	t.check(not mt.eom_check(conn, MT_HDRADD), "nothing added outside a window")
	mt.disconnect(conn)
end)
