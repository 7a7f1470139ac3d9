//! Decodes a file in the fuzz harness's format (u16 LE length, access unit)
//! with openh264 as the RTSP source does, and says what came out. For fuzz
//! findings outside the fuzzer: `cargo run --example h264_units FILE`, or
//! under valgrind to see what a build without AddressSanitizer does.

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

fn main() {
    let path = std::env::args().nth(1).expect("usage: h264_units FILE");
    let data = std::fs::read(&path).expect("read the file");
    let mut decoder = Decoder::new().expect("openh264 decoder");
    let (mut units, mut pictures, mut errors) = (0, 0, 0);
    let mut rgb = Vec::new();
    let mut rest = data.as_slice();
    while rest.len() >= 2 {
        let n = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let (unit, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        units += 1;
        match decoder.decode(unit) {
            Ok(Some(yuv)) => {
                let (w, h) = yuv.dimensions();
                rgb.resize(w * h * 3, 0);
                yuv.write_rgb8(&mut rgb);
                pictures += 1;
            }
            Ok(None) => {}
            Err(_) => errors += 1,
        }
    }
    println!("{path}: {units} access units, {pictures} pictures, {errors} decode errors");
}
