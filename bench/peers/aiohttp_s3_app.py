"""aiohttp peer of the real-upload experiment: the seed's Sanic app (on aiohttp, as in the other experiments) with its
simulated upload replaced by a PUT of the image to S3. The seed's closing section does that with aioboto3, which is
not packaged for Debian: here boto3 (Debian's python3-boto3) runs in the loop's default thread pool executor, under
asyncio.Semaphore(5).

    python3 aiohttp_s3_app.py PORT ENDPOINT BUCKET    (env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)

POST /upload takes the image as the form field "image" or as the raw body with its Content-Type; the key is
"uploads/" + 128 random bits in hex. Answers {"success": true, "key": ...} (compact JSON, as Sanic's).
"""
import asyncio
import functools
import json
import logging
import os
import secrets
import sys

import boto3
from aiohttp import web
from botocore.config import Config

PORT, ENDPOINT, BUCKET = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class ImageUploader:
    """A singletone class of image uploader."""
    def __init__(self, maxconn: int = 5):
        self.lock = asyncio.Semaphore(maxconn)
        self.s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"),
                               config=Config(s3={"addressing_style": "path"}, max_pool_connections=maxconn))

    async def upload(self, data, content_type):
        key = "uploads/" + secrets.token_hex(16)
        async with self.lock:
            put = functools.partial(self.s3.put_object, Bucket=BUCKET, Key=key, Body=data, ContentType=content_type)
            await asyncio.get_running_loop().run_in_executor(None, put)
        return key


def sanic_json(body, status=200):
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, separators=(",", ":")))


async def setup_image_uploader(app):
    app["image_uploader"] = ImageUploader()


async def upload(request):
    if request.content_type == "multipart/form-data":
        form = await request.post()
        image = form.get("image")
        if image is None or not hasattr(image, "file"):
            return sanic_json({"error": "no image"}, 400)
        data, content_type = image.file.read(), image.content_type or "application/octet-stream"
    else:
        data, content_type = await request.read(), request.content_type or "application/octet-stream"
    if not data:
        return sanic_json({"error": "no image"}, 400)
    key = await request.app["image_uploader"].upload(data, content_type)
    return sanic_json({"success": True, "key": key})


app = web.Application(client_max_size=16 * 1024 * 1024)
app.on_startup.append(setup_image_uploader)
app.router.add_route("POST", "/upload", upload)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    web.run_app(app, host="127.0.0.1", port=PORT, backlog=100, print=lambda *a: print(*a, file=sys.stderr))
