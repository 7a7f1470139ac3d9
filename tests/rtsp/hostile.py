#!/usr/bin/python3
"""A hostile RTSP camera: a TCP proxy in front of a real RTSP server
(serve.py) that damages what the server sends, the way broken or
malicious cameras do. RTP must be TCP-interleaved (edgewatch's default).

  hostile.py --port P --upstream U --mode MODE [--seed N]

Modes:
  bitflip   flips 1-8 random bits in one RTP payload in twenty
  truncate  cuts one RTP payload in twenty to a random length
  sps       replaces every in-band SPS by one that claims a picture of
            16384x16384 with 16 reference frames, and every PPS by junk
  bignal    after 20 good packets, sends one 100 MB NAL unit (FU-A
            fragments with no end), then the stream goes on
  stall     every other connection stops halfway through the DESCRIBE
            answer; the others stop forwarding after 30 packets; both
            keep the connection open and silent

It prints "ready" once it listens. Sequence numbers are rewritten (from the
server's first) so that what it injects looks like the server's own stream.
"""
import argparse
import random
import socket
import struct
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--upstream", type=int, required=True)
ap.add_argument("--mode", required=True,
                choices=["bitflip", "truncate", "sps", "bignal", "stall"])
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()


class Bits:
    def __init__(self):
        self.bits = []

    def u(self, n, v):
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, v):
        v += 1
        n = v.bit_length()
        self.bits += [0] * (n - 1)
        self.u(n, v)

    def bytes(self):
        self.bits.append(1)  # rbsp stop bit
        while len(self.bits) % 8:
            self.bits.append(0)
        out = bytearray()
        for i in range(0, len(self.bits), 8):
            out.append(int("".join(map(str, self.bits[i:i + 8])), 2))
        return bytes(out)


def absurd_sps():
    b = Bits()
    b.u(8, 100)   # profile_idc: high
    b.u(8, 0)     # constraint flags
    b.u(8, 52)    # level 5.2
    b.ue(0)       # seq_parameter_set_id
    b.ue(1)       # chroma_format_idc 4:2:0
    b.ue(0)       # bit_depth_luma_minus8
    b.ue(0)       # bit_depth_chroma_minus8
    b.u(1, 0)     # qpprime_y_zero_transform_bypass
    b.u(1, 0)     # seq_scaling_matrix_present
    b.ue(0)       # log2_max_frame_num_minus4
    b.ue(2)       # pic_order_cnt_type
    b.ue(16)      # max_num_ref_frames
    b.u(1, 0)     # gaps_in_frame_num_allowed
    b.ue(1023)    # pic_width_in_mbs_minus1: 16384 px
    b.ue(1023)    # pic_height_in_map_units_minus1
    b.u(1, 1)     # frame_mbs_only
    b.u(1, 1)     # direct_8x8_inference
    b.u(1, 0)     # frame_cropping
    b.u(1, 0)     # vui_parameters_present
    return b"\x67" + b.bytes()


SPS = absurd_sps()
PPS = b"\x68" + bytes(random.Random(7).randrange(256) for _ in range(40))


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


class Downstream:
    """What goes to the client, with the RTP sequence renumbered."""

    def __init__(self, client, rng, conn_no):
        self.client = client
        self.rng = rng
        self.conn_no = conn_no
        # The first packet's number, which PLAY's RTP-Info announced.
        self.seq = None
        self.packets = 0
        self.injected = False
        self.after_marker = False

    def rtp(self, channel, packet):
        header, payload = packet[:12], packet[12:]
        csrc = (header[0] & 0x0F) * 4
        header, payload = packet[:12 + csrc], packet[12 + csrc:]
        self.packets += 1
        mode = a.mode
        if mode == "bitflip" and payload and self.rng.random() < 0.05:
            p = bytearray(payload)
            for _ in range(self.rng.randint(1, 8)):
                i = self.rng.randrange(len(p))
                p[i] ^= 1 << self.rng.randrange(8)
            payload = bytes(p)
        elif mode == "truncate" and payload and self.rng.random() < 0.05:
            payload = payload[:self.rng.randrange(len(payload))]
        elif mode == "sps" and payload:
            payload = self.sps(payload)
        elif mode == "bignal" and self.packets > 20 and self.after_marker and not self.injected:
            # Between two access units, so that the depacketizer takes
            # it as the start of the next one.
            self.injected = True
            self.big_nal(channel, header)
        elif mode == "stall" and self.packets > 30:
            stall()
        self.after_marker = bool(header[1] & 0x80)
        self.send(channel, header, payload)

    def sps(self, payload):
        kind = payload[0] & 0x1F
        if kind == 7:
            return SPS
        if kind == 8:
            return PPS
        if kind == 24:  # STAP-A: rebuild with the absurd sets
            out, i = bytearray(payload[:1]), 1
            while i + 2 <= len(payload):
                n = struct.unpack(">H", payload[i:i + 2])[0]
                nal = payload[i + 2:i + 2 + n]
                i += 2 + n
                if nal and nal[0] & 0x1F == 7:
                    nal = SPS
                elif nal and nal[0] & 0x1F == 8:
                    nal = PPS
                out += struct.pack(">H", len(nal)) + nal
            return bytes(out)
        return payload

    def big_nal(self, channel, header):
        # FU-A of an IDR slice: a start fragment, then 100 MB of middle
        # fragments, never an end; the same timestamp as the current frame.
        piece = 60000
        junk = bytes(self.rng.randrange(256) for _ in range(piece))
        hdr = bytearray(header)
        hdr[1] &= 0x7F  # no marker
        self.send(channel, bytes(hdr), bytes([0x7C, 0x85]) + junk)
        for _ in range(100 * 1000 * 1000 // piece):
            self.send(channel, bytes(hdr), bytes([0x7C, 0x05]) + junk)

    def send(self, channel, header, payload):
        h = bytearray(header)
        if self.seq is None:
            self.seq = struct.unpack(">H", h[2:4])[0]
        h[2:4] = struct.pack(">H", self.seq)
        self.seq = (self.seq + 1) & 0xFFFF
        body = bytes(h) + payload
        self.client.sendall(b"$" + bytes([channel]) + struct.pack(">H", len(body)) + body)


def stall():
    threading.Event().wait()


def hang_up(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def server_to_client(up, client, conn_no):
    rng = random.Random(a.seed * 1000 + conn_no)
    down = Downstream(client, rng, conn_no)
    buf = b""
    try:
        while True:
            if not buf:
                buf = up.recv(65536)
                if not buf:
                    return
            if buf[0:1] == b"$":
                while len(buf) < 4:
                    buf += recv_exact(up, 4 - len(buf))
                channel, n = buf[1], struct.unpack(">H", buf[2:4])[0]
                while len(buf) < 4 + n:
                    buf += recv_exact(up, 4 + n - len(buf))
                packet, buf = buf[4:4 + n], buf[4 + n:]
                if channel % 2 == 0 and len(packet) >= 12:
                    down.rtp(channel, packet)
                else:
                    client.sendall(b"$" + bytes([channel]) + struct.pack(">H", n) + packet)
                continue
            while b"\r\n\r\n" not in buf:
                buf += recv_exact(up, 1)
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(rest) < length:
                rest += recv_exact(up, length - len(rest))
            message = head + b"\r\n\r\n" + rest[:length]
            buf = rest[length:]
            if a.mode == "stall" and conn_no % 2 == 0 and b"application/sdp" in head:
                client.sendall(message[:len(message) // 2])
                stall()
            client.sendall(message)
    except (EOFError, OSError):
        return
    finally:
        hang_up(up, client)


def client_to_server(client, up):
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            up.sendall(data)
    except OSError:
        pass
    finally:
        hang_up(up, client)


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", a.port))
listener.listen(16)
print("ready", flush=True)
conn_no = 0
while True:
    client, _ = listener.accept()
    conn_no += 1
    try:
        up = socket.create_connection(("127.0.0.1", a.upstream))
    except OSError:
        client.close()
        continue
    threading.Thread(target=server_to_client, args=(up, client, conn_no), daemon=True).start()
    threading.Thread(target=client_to_server, args=(client, up), daemon=True).start()
