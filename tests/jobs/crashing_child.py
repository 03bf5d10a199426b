"""A child for tests of pose_tuner.jobs.executor: crashes, hangs or answers, as its job says."""

import ctypes
import json
import sys
import time

spec_path, result_path = sys.argv[1:]
spec = json.load(open(spec_path))
print("started", flush=True)
if spec["do"] == "segfault":
    ctypes.string_at(0)
elif spec["do"] == "hang":
    time.sleep(600)
elif spec["do"] == "exit":
    sys.exit(3)
elif spec["do"] == "garbage":
    json.dump({"status": "ok", "no_such_field": 1}, open(result_path, "w"))
elif spec["do"] == "drop" and int(open(spec["drops"]).read()) > 0:
    # its device's session went away (the file counts how many more times that happens)
    left = int(open(spec["drops"]).read())
    open(spec["drops"], "w").write(str(left - 1))
    json.dump({"status": "failed", "error": "RPCError: the session ended",
               "error_kind": "device_lost"}, open(result_path, "w"))
elif spec["do"] == "path":
    json.dump({"status": "ok", "extra": {"path": sys.path}}, open(result_path, "w"))
else:
    json.dump({"status": "ok", "latency_median_ms": 4.2, "extra": {"value": 42}},
              open(result_path, "w"))
