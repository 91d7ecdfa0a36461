-- window: restore-1
-- A 50 MB body and long header fields: the fingerprint streams (memory
-- per session stays constant whatever the body size), the result equals
-- the fingerprint of the raw message, and repeating big messages does not
-- make the milter grow (RSS read from /proc).  miltertest cannot send a
-- header field over about 1 kB (its stack overflows); test_protocol.py
-- sends 1 MB ones with its own milter client.
local t = dofile(LIBDIR .. "/lib.lua")

local CHUNK = 65535

local function headers_of(n)
	return {
		{"Message-ID", "<big" .. n .. "@example.net>"},
		{"From", "sender@example.net"},
		{"To", "alice@example.org"},
		{"Subject", "big " .. n},
	}
end

t.run("big", function()
	local conn = t.connect()
	t.check(t.send(conn, t.message(0, {"<alice@example.org>"})) == SMFIR_ACCEPT, "warm-up")
	local base = t.rss_kb()

	-- 50 MB body, written to a file as well for the reference fingerprint.
	local line = "0123456789 abcdefghijklmnopqrstuvwxyz  ABCDEFGHIJKLMNOPQRSTUVWXYZ\t \r\n"
	local chunk = string.rep(line, math.floor(CHUNK / #line))
	local chunks = {}
	local total = 0
	local path = TMP .. "/big.eml"
	local f = io.open(path, "wb")
	local msg = {rcpts = {"<alice@example.org>"}, qid = "BIG1", headers = headers_of(1)}
	for _, h in ipairs(msg.headers) do f:write(h[1] .. ": " .. h[2] .. "\r\n") end
	f:write("\r\n")
	while total < 50 * 1024 * 1024 do
		chunks[#chunks + 1] = chunk
		f:write(chunk)
		total = total + #chunk
	end
	f:close()
	msg.body_chunks = chunks
	t.check(t.send(conn, msg) == SMFIR_ACCEPT, "50 MB message accepted")
	chunks, msg.body_chunks = nil, nil
	collectgarbage()
	local fp = mt.getheader(conn, "X-Backfill-Fingerprint", 0)
	local rc, out = t.ctl("fingerprint " .. path)
	os.remove(path)
	t.check(out:match("^(v1:%x+)") == fp, "50 MB: stream " .. tostring(fp) .. " = raw " .. out)
	local after_body = t.rss_kb()
	mt.echo(string.format("RSS %d kB before, %d kB after a %d MB body", base, after_body, math.floor(total / 1048576)))
	t.check(after_body - base < 4096, "a 50 MB body grows RSS by less than 4 MB")

	-- Long header fields: one the fingerprint selects (Subject, kept
	-- until end of headers) and one it ignores.
	local big = string.rep("x", 900)
	local first
	for n = 1, 4 do
		local m = {rcpts = {"<alice@example.org>"}, qid = "HDR" .. n, headers = headers_of(100 + n), body = "short\r\n"}
		m.headers[4] = {"Subject", big .. n}
		table.insert(m.headers, {"X-Junk", big})
		t.check(t.send(conn, m) == SMFIR_ACCEPT, "long header message accepted")
		t.check(mt.getheader(conn, "X-Backfill-Fingerprint", 0) ~= nil, "fingerprinted")
		if n == 1 then first = t.rss_kb() end
	end
	local last = t.rss_kb()
	mt.echo(string.format("RSS %d kB after the first long header message, %d kB after the fourth", first, last))
	t.check(first - base < 4096, "long headers cost less than 4 MB")
	t.check(last - first < 1024, "repeated long headers do not grow RSS")
	mt.disconnect(conn)

	-- A new session after the big ones starts from the same footprint.
	conn = t.connect()
	t.check(t.send(conn, t.message(9, {"<alice@example.org>"})) == SMFIR_ACCEPT, "accept")
	mt.disconnect(conn)
	t.check(t.rss_kb() - last < 1024, "later sessions do not grow RSS")
end)
