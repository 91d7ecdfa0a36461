-- Helpers shared by the miltertest scripts of backfill-milter.
-- run-miltertest.py defines SOCKET, MILTER_PID, BACKFILLCTL, STATE, TMP
-- and LIBDIR with -D before the script runs.

local t = {}

function t.fail(msg)
	error(msg, 2)
end

function t.check(cond, msg)
	if not cond then
		error("check failed: " .. msg, 2)
	end
end

function t.connect()
	local conn = mt.connect(SOCKET, 40, 0.25)
	if conn == nil then
		error("cannot connect to the milter at " .. SOCKET)
	end
	return conn
end

-- Sends one message and returns after end of message.
-- msg = { from = "<a@x>", rcpts = {"<b@y>", ...}, headers = {{name, value}, ...},
--         body = "..." or body_chunks = {...}, qid = "ABC123" }
function t.send(conn, msg)
	if msg.qid ~= nil then
		mt.macro(conn, SMFIC_MAIL, "i", msg.qid)
	end
	local err = mt.mailfrom(conn, msg.from or "<sender@example.net>")
	if err ~= nil then error("mailfrom: " .. err) end
	for _, r in ipairs(msg.rcpts) do
		err = mt.rcptto(conn, r)
		if err ~= nil then error("rcptto: " .. err) end
	end
	for _, h in ipairs(msg.headers) do
		err = mt.header(conn, h[1], h[2])
		if err ~= nil then error("header " .. h[1] .. ": " .. err) end
	end
	err = mt.eoh(conn)
	if err ~= nil then error("eoh: " .. err) end
	if msg.body ~= nil then
		err = mt.bodystring(conn, msg.body)
		if err ~= nil then error("body: " .. err) end
	end
	if msg.body_chunks ~= nil then
		for _, c in ipairs(msg.body_chunks) do
			err = mt.bodystring(conn, c)
			if err ~= nil then error("body: " .. err) end
		end
	end
	err = mt.eom(conn)
	if err ~= nil then error("eom: " .. err) end
	return mt.getreply(conn)
end

-- A plain message; n makes it unique.
function t.message(n, rcpts)
	return {
		rcpts = rcpts,
		qid = "Q" .. n,
		headers = {
			{"Received", "from client.example.net by mx.example.org; " .. n},
			{"Message-ID", "<msg" .. n .. "@example.net>"},
			{"Date", "Sat, 21 Nov 2026 10:00:00 +0000"},
			{"From", "Sender <sender@example.net>"},
			{"To", "Rcpt <rcpt@example.org>"},
			{"Subject", "test message " .. n},
		},
		body = "Hello,\r\n\r\nthis is message " .. n .. ".\r\n",
	}
end

function t.ctl(args)
	local cmd = "BACKFILL_STATE='" .. STATE .. "' '" .. BACKFILLCTL .. "' " .. args
	local p = io.popen(cmd .. " 2>&1; echo rc=$?")
	local out = p:read("*a")
	p:close()
	local rc = tonumber(out:match("rc=(%d+)%s*$"))
	return rc, out:gsub("rc=%d+%s*$", "")
end

-- The milter's log so far (stderr, unbuffered: complete up to the last
-- reply received).
function t.log_text()
	local f = io.open(MILTER_LOG)
	if f == nil then error("cannot read " .. MILTER_LOG) end
	local s = f:read("*a")
	f:close()
	return s
end

-- Whether the log has a line containing every one of the plain strings.
function t.log_has(...)
	local words = {...}
	for line in t.log_text():gmatch("[^\n]+") do
		local all = true
		for _, w in ipairs(words) do
			if not line:find(w, 1, true) then
				all = false
				break
			end
		end
		if all then return true end
	end
	return false
end

function t.rss_kb()
	local f = io.open("/proc/" .. MILTER_PID .. "/status")
	if f == nil then error("milter process " .. MILTER_PID .. " is gone") end
	local s = f:read("*a")
	f:close()
	return tonumber(s:match("VmRSS:%s+(%d+)"))
end

-- Runs f, printing the error and exiting non-zero on failure (miltertest
-- itself would only print it).
function t.run(name, f)
	local ok, err = xpcall(f, debug.traceback)
	if not ok then
		io.stderr:write(name .. ": FAILED: " .. tostring(err) .. "\n")
		os.exit(1)
	end
	mt.echo(name .. ": ok")
end

return t
