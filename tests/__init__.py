"""The suite. Its processes write Prometheus' multiprocess files to a directory of their own."""

import os
import tempfile

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="inbox-test-metrics-"))
