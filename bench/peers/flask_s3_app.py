"""Flask peer of the real-upload experiment: the seed's Flask app with its simulated upload replaced by what the seed's
closing section describes, a PUT of the image to S3, here with boto3 (Debian's python3-boto3), on Flask's development
server with threaded=True as in the study.

    python3 flask_s3_app.py PORT ENDPOINT BUCKET      (env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)

POST /upload takes the image as the form field "image" (request.files["image"], as the seed) or as the raw body with
its Content-Type (what `ab -p image.jpg -T image/jpeg` sends); 5 uploads at a time (threading.Semaphore(5)); the key is
"uploads/" + 128 random bits in hex. Answers {"success": true, "key": ...}.
"""
import os
import secrets
import sys
from threading import Semaphore

import boto3
from botocore.config import Config
from flask import Flask, jsonify, request

PORT, ENDPOINT, BUCKET = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class ImageUploader:
    """A singletone class of image uploader."""
    def __init__(self, maxconn: int = 5):
        self.lock = Semaphore(maxconn)
        self.s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"),
                               config=Config(s3={"addressing_style": "path"}, max_pool_connections=maxconn))

    def upload(self, data, content_type):
        key = "uploads/" + secrets.token_hex(16)
        with self.lock:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType=content_type)
        return key


app = Flask(__name__)

image_uploader = ImageUploader()


@app.route("/upload", methods=["POST"])
def upload():
    image = request.files.get("image")
    if image is not None:
        data, content_type = image.read(), image.content_type or "application/octet-stream"
    else:
        data, content_type = request.get_data(), request.content_type or "application/octet-stream"
    if not data:
        return jsonify({"error": "no image"}), 400
    key = image_uploader.upload(data, content_type)
    return jsonify({"success": True, "key": key})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT, threaded=True)
