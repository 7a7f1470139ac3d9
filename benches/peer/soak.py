#!/usr/bin/env python3
"""RSS over a long run: `edgewatch detect` over COUNT images (the given files
repeated), VmRSS sampled as results come out. Prints a Markdown section:
RSS after the warm-up (10% of the images) and at the end, and the growth.

Usage: soak.py EDGEWATCH CONFIG COUNT IMAGE...
"""
import subprocess
import sys
import threading
import time


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    binary, config, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    images = sys.argv[4:]
    files = [images[i % len(images)] for i in range(count)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "detect", "--config", config, *files],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    done = [0]
    samples = []  # (images done, VmRSS KiB)

    def sample():
        while proc.poll() is None:
            kib = rss_kib(proc.pid)
            if kib is not None:
                samples.append((done[0], kib))
            time.sleep(0.25)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    for _ in proc.stdout:
        done[0] += 1
    proc.wait()
    t.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0 or done[0] != count:
        sys.exit(f"error: detect exited {proc.returncode} after {done[0]} of {count} images")
    warm = max(1, count // 10)
    after_warm = [k for n, k in samples if warm <= n < warm + max(1, count // 20)]
    at_end = [k for n, k in samples if n >= count - max(1, count // 20)]
    if not after_warm or not at_end:
        sys.exit("error: too few RSS samples; use more images")
    a = sum(after_warm) / len(after_warm) / 1024
    b = sum(at_end) / len(at_end) / 1024
    peak = max(k for _, k in samples) / 1024
    print(f"## RSS over {count} images (`benches/peer/soak.py`)")
    print()
    print(f"`edgewatch detect` over {count} 1080p images ({len(images)} files repeated) in one process,")
    print(f"default config, {wall:.0f} s. VmRSS sampled every 0.25 s; averages over 5% windows.")
    print()
    print("| after warm-up (image %d) | at the end | growth | largest sample |" % warm)
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {a:.1f} MiB | {b:.1f} MiB | {b - a:+.1f} MiB | {peak:.1f} MiB |")
    print()


if __name__ == "__main__":
    main()
