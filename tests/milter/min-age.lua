-- window: restore-1
-- config: ConfirmDelivery no
-- config: MinAge 4s
-- Without delivery confirmation a repeat counts as delivered once the
-- first copy is older than MinAge; a quicker repeat is only suspected.
-- Ages are whole seconds: the quick repeat must come within MinAge - 1 s
-- (4 s: a loaded machine may stall a second, 2 s left as little as 1 s).
local t = dofile(LIBDIR .. "/lib.lua")

t.run("min-age", function()
	local conn = t.connect()
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate", "suspected"),
		"repeat within MinAge: suspected")
	t.check(not mt.eom_check(conn, MT_QUARANTINE), "not held within MinAge")
	mt.sleep(4.5)
	t.check(t.send(conn, t.message(1, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	t.check(mt.eom_check(conn, MT_QUARANTINE), "repeat after MinAge: held")
	mt.disconnect(conn)
end)
