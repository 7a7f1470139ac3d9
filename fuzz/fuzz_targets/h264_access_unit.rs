//! What an RTSP source does with each access unit a camera sends, as
//! `source/rtsp.rs` does it: openh264 decodes it (C++ inside our process)
//! and a picture is converted to RGB8. A crash or a runaway allocation here
//! would take every source of the daemon down, so the fuzzer feeds it
//! mutated real encoder output (x264, openh264: fuzz/seed.py).
//!
//! Input: a sequence of access units, each prefixed by its length (u16 LE),
//! decoded by one decoder in order, as a stream is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

/// A picture larger than this is refused by the RTSP source before RGB
/// conversion (its width x height limit); the harness does the same.
const MAX_PIXELS: usize = 3840 * 2160;

fuzz_target!(|data: &[u8]| {
    let Ok(mut decoder) = Decoder::new() else {
        return;
    };
    let mut rgb = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let (unit, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        if let Ok(Some(yuv)) = decoder.decode(unit) {
            let (w, h) = yuv.dimensions();
            if w * h == 0 || w * h > MAX_PIXELS {
                continue;
            }
            rgb.resize(w * h * 3, 0);
            yuv.write_rgb8(&mut rgb);
        }
    }
});
