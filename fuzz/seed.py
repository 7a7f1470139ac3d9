#!/usr/bin/python3
"""Seeds the fuzz corpus with real encoder output: x264 (through GStreamer,
Debian's packages, as the RTSP tests stream it) at several sizes, profiles
and GOPs, written in the harness's format (u16 LE length, access unit).

Run with Debian's /usr/bin/python3 (python3-gi): fuzz/seed.py fuzz/corpus/h264_access_unit
"""
import os
import struct
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import Gst  # noqa: E402

Gst.init(None)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
variants = [
    ("320x240", "baseline", 4, "smpte"),
    ("640x360", "main", 8, "ball"),
    ("1280x720", "high", 12, "snow"),
    ("176x144", "baseline", 1, "checkers-8"),
    ("720x576", "high", 30, "zone-plate"),
]
for i, (size, profile, gop, pattern) in enumerate(variants):
    w, h = size.split("x")
    pipe = Gst.parse_launch(
        f"videotestsrc num-buffers=16 pattern={pattern} ! video/x-raw,width={w},height={h},format=I420 "
        f"! x264enc key-int-max={gop} speed-preset=ultrafast tune=zerolatency "
        f"! video/x-h264,profile={profile},stream-format=byte-stream,alignment=au "
        "! appsink name=sink sync=false"
    )
    sink = pipe.get_by_name("sink")
    pipe.set_state(Gst.State.PLAYING)
    units = []
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        units.append(bytes(info.data))
        buf.unmap(info)
    pipe.set_state(Gst.State.NULL)
    # The whole stream, and its first two units alone (an SPS/PPS + IDR).
    for name, chunk in ((f"x264-{size}-{profile}", units), (f"x264-{size}-{profile}-idr", units[:2])):
        with open(os.path.join(out, name), "wb") as f:
            for u in chunk:
                u = u[:65535]
                f.write(struct.pack("<H", len(u)) + u)
    print(f"{size} {profile}: {len(units)} access units")
