#!/usr/bin/python3
"""An RTSP server for the tests: gst-rtsp-server (Debian's packages) on
127.0.0.1, streaming a looped set of PNG frames encoded by x264 (or x265).
Prints "ready" once it listens; stops on SIGTERM.

Run with Debian's /usr/bin/python3 (python3-gi), not a virtualenv's python.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--port", required=True)
p.add_argument("--path", default="/cam")
p.add_argument("--frames", required=True, help="PNG files as a printf pattern: dir/f%%03d.png")
p.add_argument("--fps", default="2")
p.add_argument("--key-int", default="4", help="frames between key frames")
p.add_argument("--codec", default="h264", choices=["h264", "h265"])
p.add_argument("--user")
p.add_argument("--password")
a = p.parse_args()

Gst.init(None)
encode = {
    # Near-lossless, so boxes can be compared with the stills' own.
    "h264": f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.key_int} "
    "pass=quant quantizer=6 ! video/x-h264,profile=high ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={a.key_int} "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}[a.codec]
launch = (
    f"( multifilesrc location={a.frames} loop=true caps=image/png,framerate={a.fps}/1 "
    f"! pngdec ! videoconvert ! video/x-raw,format=I420 ! {encode} )"
)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(a.port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(launch)
factory.set_shared(True)
if a.user:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password or ""), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role("user", "media.factory.access", True)
    permissions.add_permission_for_role("user", "media.factory.construct", True)
    factory.set_permissions(permissions)
server.get_mount_points().add_factory(a.path, factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{a.port}")
loop = GLib.MainLoop()
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
print("ready", flush=True)
loop.run()
