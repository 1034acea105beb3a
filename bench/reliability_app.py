"""The WSGI app of bench/reliability.sh part c, run by gunicorn with 4 sync workers.

GET /fast answers at once; POST /upload reads the whole body (as any sync-worker app does:
the worker is busy until the body has arrived) and answers its length.
"""


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/upload":
        n = 0
        stream = environ["wsgi.input"]
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            n += len(chunk)
        body = str(n).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
