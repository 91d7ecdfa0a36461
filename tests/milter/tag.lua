-- window: restore-1
-- Inside a window a new message gets X-Backfill-Window and
-- X-Backfill-Fingerprint, and the fingerprint computed from the milter
-- stream equals the one computed from the raw message (backfillctl
-- fingerprint, the code the Dovecot plugin runs on stored mail).
local t = dofile(LIBDIR .. "/lib.lua")

local function write_raw(msg, path)
	local f = io.open(path, "wb")
	for _, h in ipairs(msg.headers) do
		f:write(h[1] .. ": " .. h[2] .. "\r\n")
	end
	f:write("\r\n" .. msg.body)
	f:close()
end

t.run("tag", function()
	local conn = t.connect()
	local msg = t.message(1, {"<Alice@Example.ORG>", "<bob@example.org>"})
	t.check(t.send(conn, msg) == SMFIR_ACCEPT, "eom reply is accept")
	t.check(mt.eom_check(conn, MT_HDRADD, "X-Backfill-Window", "restore-1"),
		"X-Backfill-Window: restore-1 added")
	local fp = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	t.check(fp ~= nil and fp:match("^v1:%x+$") and #fp == 67,
		"fingerprint header v1:<64 hex>, got " .. tostring(fp))
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate"),
		"a new message is not called a duplicate")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Dedup"),
		"a checked message is not tagged unchecked")
	t.check(not mt.eom_check(conn, MT_RCPTDELETE, "<Alice@Example.ORG>") and
		not mt.eom_check(conn, MT_RCPTDELETE, "<bob@example.org>"),
		"no recipient removed")

	local path = TMP .. "/msg1.eml"
	write_raw(msg, path)
	local rc, out = t.ctl("fingerprint " .. path)
	t.check(rc == 0, "backfillctl fingerprint: " .. out)
	t.check(out:match("^(v1:%x+)") == fp,
		"stream fingerprint " .. fp .. " equals raw " .. out)

	-- One record per recipient, keyed by the bare lowercased address.
	rc, out = t.ctl("dedup stats")
	t.check(out:match("records (%d+)") == "2", "2 records: " .. out)
	rc, out = t.ctl("dedup mark-delivered restore-1 alice@example.org " .. fp)
	t.check(rc == 0, "record for alice@example.org: " .. out)

	-- A second message in the same session is judged on its own.
	local msg2 = t.message(2, {"<bob@example.org>"})
	t.check(t.send(conn, msg2) == SMFIR_ACCEPT, "second message accepted")
	local fp2 = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	t.check(fp2 ~= nil and fp2 ~= fp, "another message, another fingerprint")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Duplicate"),
		"second message is new")
	mt.disconnect(conn)
end)
