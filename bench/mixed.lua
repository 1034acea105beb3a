-- Mixed HTTP/1.1 traffic for wrk (bench/ab.sh: SCRIPT=bench/mixed.lua): one request in EVERY
-- (environment, default 100) is a small chunked upload, which rouse's fast path hands to
-- hyper; the others are plain GETs on the same keep-alive connections. It shows what a
-- declined request costs the requests after it on its connection.
local every = tonumber(os.getenv("EVERY") or "100")
local n = 0
local upload = "POST /upload HTTP/1.1\r\nHost: bench.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhello\r\n0\r\n\r\n"
local get = "GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n"

function request()
    n = n + 1
    if n % every == 0 then
        return upload
    end
    return get
end
