#!/usr/bin/env python3
"""Server memory under many credential writes at once (docs/operating.md#limits).

Starts the real `cascade server` binary (its defaults: argon2id 19 MiB for passwords) on a fresh
data directory on 127.0.0.1, then makes TOTAL enrollments (`enroll`, each stores a new client
credential) or TOTAL users with a password (`users`, each hashes it with argon2id) from PARALLEL
threads, while it samples the server's RSS and threads from /proc every 50 ms. Prints the
server's CPU per write, RSS before, at the peak and after, and the first refusal if any.

Usage: bench/auth/enroll-rss.py CASCADE_BIN TOTAL PARALLEL [enroll|users]
e.g.   bench/auth/enroll-rss.py target/release/cascade 1000 200 enroll
"""
import http.client, json, os, re, socket, ssl, subprocess, sys, tempfile, threading, time

binary, total, parallel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "enroll"
data = tempfile.mkdtemp(prefix="cascade-enroll-rss-")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                      "--lockout-failures", "4294967295", "--lockout-address-failures", "4294967295"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
token = None
want = "enr" if mode == "enroll" else "adm"
for line in p.stdout:
    m = re.search(r"(\S*cascade_" + want + r"_[0-9a-f]+_[0-9a-f]+\S*)", line)
    if m:
        token = m.group(1); break
threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
assert token, "no enrollment token"
def status(pid):
    d = {}
    for l in open(f"/proc/{pid}/status"):
        k, _, v = l.partition(":")
        if k in ("VmRSS", "VmHWM", "Threads"): d[k] = int(v.split()[0])
    return d
ctx = ssl.create_default_context(cafile=os.path.join(data, "tls/ca.pem"))
time.sleep(0.5)
before = status(p.pid)
peak = dict(before)
done = [0]; fails = [0]; lock = threading.Lock(); stop = False
def sampler():
    while not stop:
        st = status(p.pid)
        for k in st: peak[k] = max(peak[k], st[k])
        time.sleep(0.05)
threading.Thread(target=sampler, daemon=True).start()
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
cpu0 = cpu()
def worker(n):
    for i in range(n):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=600)
        path, body = (("/api/client/enroll", {"name": f"pc-{threading.get_ident()}-{i}"}) if mode == "enroll"
                      else ("/api/users", {"name": f"u{threading.get_ident()}x{i}", "role": "viewer", "password": "correct horse battery staple"}))
        c.request("POST", path, body=json.dumps(body),
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = c.getresponse(); rb = r.read(); c.close()
        with lock:
            if r.status == 201: done[0] += 1
            else:
                fails[0] += 1
                if fails[0] == 1: print("first refusal", r.status, path, rb[:300])
t0 = time.time()
ts = [threading.Thread(target=worker, args=(total // parallel,)) for _ in range(parallel)]
[t.start() for t in ts]; [t.join() for t in ts]
wall = time.time() - t0
cpu1 = cpu()
time.sleep(1)
after = status(p.pid)
stop = True
print(f"mode={mode} binary={binary} ok={done[0]} refused={fails[0]} parallel={parallel} wall={wall:.1f}s "
      f"server_cpu={cpu1-cpu0:.2f}s ({(cpu1-cpu0)/max(done[0],1)*1000:.2f} ms per write)")
print(f"RSS before {before['VmRSS']/1024:.0f} MiB, peak sampled {peak['VmRSS']/1024:.0f} MiB, "
      f"VmHWM {after['VmHWM']/1024:.0f} MiB, after {after['VmRSS']/1024:.0f} MiB; threads peak {peak['Threads']}, after {after['Threads']}")
p.terminate(); p.wait()
import shutil; shutil.rmtree(data, ignore_errors=True)
