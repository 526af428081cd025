"""The image's HEALTHCHECK: exit 0 when the model is ready (loaded and healthy), 1 otherwise."""

import sys
import urllib.request

port = sys.argv[1] if len(sys.argv) > 1 else "8080"
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/model", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:  # connection refused, 503 while loading, time-out: all unhealthy
    sys.exit(1)
