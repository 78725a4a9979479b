"""A real S3-compatible server for the tests: moto in server mode on 127.0.0.1.

    python tests/s3_server.py PORT

moto checks If-None-Match and then stores the object in two steps, without a lock, while its
server runs requests on threads; real S3 makes the conditional PUT atomic. So this server runs
moto's app one request at a time: the conditional create is then atomic, as on S3.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from typing import Any

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    server = make_server("127.0.0.1", int(sys.argv[1]), one_at_a_time, threaded=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
