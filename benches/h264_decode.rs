//! What an RTSP source costs per frame: openh264 decoding a 1080p H.264
//! stream (a key frame, then predicted frames of slowly moving text) into
//! RGB8, as `source/rtsp.rs` does; every frame, and key frames only.
//! `cargo bench --bench h264_decode`. The stream is encoded here by
//! openh264's own encoder, so the bench needs nothing but the crate.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use edgewatch_samples as textimg;
use openh264::decoder::Decoder;
use openh264::encoder::Encoder;
use openh264::formats::{RgbSliceU8, YUVBuffer, YUVSource};

const W: usize = 1920;
const H: usize = 1080;
/// One group of pictures: a key frame and this many frames after it.
const GOP: usize = 12;

/// A GOP of Annex B access units: text that scrolls a few pixels a frame.
fn stream() -> Vec<Vec<u8>> {
    let (img, _) = textimg::render(W as u32 + 64, H as u32, 11, 14, 18, 44);
    let mut enc = Encoder::new().expect("openh264 encoder");
    (0..GOP)
        .map(|i| {
            let frame =
                image::imageops::crop_imm(&img, (i * 4) as u32, 0, W as u32, H as u32).to_image();
            let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(frame.as_raw(), (W, H)));
            enc.encode(&yuv).expect("encode").to_vec()
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let units = stream();
    let mut rgb = vec![0u8; W * H * 3];
    let mut group = c.benchmark_group("h264-1080p");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("decode+rgb/every-frame (per GOP of 12)", |b| {
        b.iter(|| {
            let mut dec = Decoder::new().unwrap();
            for unit in &units {
                if let Some(yuv) = dec.decode(unit).unwrap() {
                    assert_eq!(yuv.dimensions(), (W, H));
                    yuv.write_rgb8(&mut rgb);
                }
            }
            black_box(&rgb);
        })
    });
    group.bench_function("decode+rgb/key-frame-only (one per GOP)", |b| {
        b.iter(|| {
            let mut dec = Decoder::new().unwrap();
            if let Some(yuv) = dec.decode(&units[0]).unwrap() {
                yuv.write_rgb8(&mut rgb);
            }
            black_box(&rgb);
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
