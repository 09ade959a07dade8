"""The seed study's Sanic app, with the same semantics, on aiohttp.

Sanic is not packaged for Debian (and this machine reaches no other registry), so the bench runs
this instead; python3-aiohttp is packaged. What is kept from the seed's Sanic code:
  - one process, one asyncio event loop;
  - an ImageUploader holding asyncio.Semaphore(5), created after the server starts
    (Sanic's "after_server_start" listener -> aiohttp's on_startup);
  - POST /upload: `async with` the semaphore, `await asyncio.sleep(randint(100, 200) / 1000)`,
    print "Image has been uploaded.", answer {"result": true} (the seed's Sanic answers "result",
    its Flask answers "success": kept as in the seed);
  - GET /calc: sum([i ** 2 for i in range(1000000)]) on the event loop, answer {"result": ...};
  - Sanic's defaults where aiohttp's differ: compact JSON (Sanic's json() uses
    separators=(",", ":")), a listen backlog of 100, an access log line per request.
Not kept: uvloop (Sanic uses it when installed; Debian has python3-uvloop but the seed machine's
setup is unknown, so the stock asyncio loop is used).

    python3 aiohttp_app.py [PORT]      (env: PORT)
"""
import json
import logging
import os
import sys
from asyncio import Semaphore
from asyncio import sleep
from random import randint

from aiohttp import web


class ImageUploader:
    """A singletone class of image uploader."""
    def __init__(self, maxconn: int = 5):
        self.lock = Semaphore(maxconn)

    async def upload(self):
        async with self.lock:
            await sleep(randint(100, 200) / 1000)
            print("Image has been uploaded.")


def sanic_json(body):
    return web.json_response(body, dumps=lambda o: json.dumps(o, separators=(",", ":")))


app = web.Application()


async def setup_image_uploader(app):
    app["image_uploader"] = ImageUploader()

app.on_startup.append(setup_image_uploader)


# I/O-bound endpoint.
async def upload(request):
    await request.app["image_uploader"].upload()
    return sanic_json({"result": True})


# CPU-bound endpoint.
async def calc(request):
    result = sum([i ** 2 for i in range(1000000)])
    return sanic_json({"result": result})

app.router.add_route("POST", "/upload", upload)
app.router.add_route("GET", "/calc", calc)

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "8000"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    web.run_app(app, host="127.0.0.1", port=port, backlog=100, print=lambda *a: print(*a, file=sys.stderr))
