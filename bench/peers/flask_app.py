"""Flask peer: the seed study's Flask code, unchanged in what it does.

Only the last lines differ: the port and the threaded switch come from the command line (or the
environment), so the bench can start it on a free loopback port in either mode:

    python3 flask_app.py [PORT] [threaded|unthreaded]      (env: PORT, FLASK_THREADED=0|1)

It runs on Flask's development server (app.run), as the study did; that server listens with
a backlog of 128, which is left as it is.
"""
import os
import sys

"""Flask"""
from random import randint
from time import sleep
from threading import Semaphore

from flask import Flask
from flask import jsonify

class ImageUploader:
    """A singletone class of image uploader."""
    def __init__(self, maxconn: int = 5):
        self.lock = Semaphore(maxconn)

    def upload(self):
        with self.lock:
            sleep(randint(100, 200) / 1000)
            print("Image has been uploaded.")

app = Flask(__name__)

image_uploader = ImageUploader()

# I/O-bound endpoint.
@app.route("/upload", methods=["POST"])
def upload():
    image_uploader.upload()
    return jsonify({"success": True})

# CPU-bound endpoint.
@app.route("/calc", methods=["GET"])
def calc():
    result = sum([i ** 2 for i in range(1000000)])
    return jsonify({"result": result})

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "5000"))
    mode = sys.argv[2] if len(sys.argv) > 2 else ("threaded" if os.environ.get("FLASK_THREADED") == "1" else "unthreaded")
    app.run(host="127.0.0.1", port=port, threaded=(mode == "threaded"))  # the seed: app.run(threaded=False)
