"""Read a cascade-published repository with python-tuf (the TUF reference client).

usage: python python_tuf_interop.py SERVED_DIR WORK_DIR
Serves SERVED_DIR on 127.0.0.1 (OS-chosen port), refreshes from the repository's first root and
downloads every target, checking custom metadata. Exits non-zero on any failure.
"""

import functools
import hashlib
import http.server
import os
import shutil
import sys
import threading

from tuf.ngclient import Updater


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    served, work = sys.argv[1], sys.argv[2]
    handler = functools.partial(Quiet, directory=served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    md, dl = os.path.join(work, "md"), os.path.join(work, "dl")
    os.makedirs(md)
    os.makedirs(dl)
    shutil.copy(os.path.join(served, "metadata", "1.root.json"), os.path.join(md, "root.json"))
    updater = Updater(md, f"{base}/metadata/", dl, f"{base}/targets/", bootstrap=None)
    updater.refresh()
    names = sorted(updater._trusted_set.targets.targets)  # noqa: SLF001
    deltas = 0
    for name in names:
        info = updater.get_targetinfo(name)
        path = updater.download_target(info)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert digest == info.hashes["sha256"], name
        meta = info.custom["cascade"]
        assert meta["version"] == name.split("/")[2], name
        deltas += "delta_from" in meta
    server.shutdown()
    print(f"python-tuf interop: {len(names)} targets ({deltas} deltas) downloaded and verified")
    return 0 if names and deltas else 1


if __name__ == "__main__":
    sys.exit(main())
