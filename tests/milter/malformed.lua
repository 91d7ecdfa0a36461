-- window: restore-1
-- Malformed input within what miltertest can send (short header fields,
-- C strings): header names with blanks or 8-bit bytes, empty values,
-- folded values, a body with NUL and 8-bit bytes and no final newline.
-- The milter accepts, fingerprints, and stays up.  Long fields and NUL
-- bytes in every position: test_protocol.py.
local t = dofile(LIBDIR .. "/lib.lua")

t.run("malformed", function()
	local conn = t.connect()
	local msg = {
		rcpts = {"<alice@example.org>", "alice@example.org", "<>"},
		qid = "BAD1",
		headers = {
			{"Bad Name", "blank in the name"},
			{"X-\200\201", "8-bit name"},
			{"Subject", ""},
			{"From", "folded\r\n\tcontinued\r\n  and more"},
			{"To", "\255\254 8-bit value"},
			{":", "empty name"},
		},
		body_chunks = {"line one\r\n", "NUL \0 inside\r\n\0\0", "\r\r\n", "no final newline"},
	}
	t.check(t.send(conn, msg) == SMFIR_ACCEPT, "accepted")
	t.check(mt.getheader(conn, "X-Backfill-Fingerprint", 0) ~= nil, "fingerprinted")
	t.check(not mt.eom_check(conn, MT_HDRADD, "X-Backfill-Dedup"), "checked")
	-- No headers and no body at all.
	t.check(t.send(conn, {rcpts = {"<bob@example.org>"}, qid = "BAD2", headers = {}}) == SMFIR_ACCEPT,
		"empty message accepted")
	t.check(mt.getheader(conn, "X-Backfill-Fingerprint", 0) ~= nil, "empty message fingerprinted")
	mt.disconnect(conn)
	-- Still serving.
	conn = t.connect()
	t.check(t.send(conn, t.message(1, {"<carol@example.org>"})) == SMFIR_ACCEPT, "still up")
	mt.disconnect(conn)
end)
