//! Writes seeded sample images (1080p by default) with text at known places,
//! and prints one JSON line of ground truth per image.
//! Usage: make-samples OUT_DIR [COUNT] [WIDTH HEIGHT] [LINES PX_LO PX_HI] [KIND]
//! KIND: `lines` (the default: LINES lines on a plain background), `busy`
//! (LINES paper labels on a cluttered scene) or `page` (a printed page;
//! LINES is ignored).
//! `SAMPLES_SEED` (default 1000) seeds the first image, the next get +1 each;
//! `SAMPLES_FONT` names another TrueType font.

use edgewatch_samples as textimg;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = std::path::PathBuf::from(args.first().map(String::as_str).unwrap_or("samples"));
    let count: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let width: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1920);
    let height: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1080);
    let lines: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(8);
    let px_lo: u32 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(26);
    let px_hi: u32 = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(44);
    let kind = args.get(7).map(String::as_str).unwrap_or("lines");
    std::fs::create_dir_all(&out).expect("create the output directory");
    let first_seed: u64 = match std::env::var("SAMPLES_SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("make-samples: SAMPLES_SEED={s:?} is not a whole number");
            std::process::exit(2);
        }),
        Err(_) => 1000,
    };
    for i in 0..count {
        let seed = first_seed + i;
        let (img, boxes) = match kind {
            "lines" => textimg::render(width, height, seed, lines, px_lo, px_hi),
            "busy" => textimg::render_busy(width, height, seed, lines, px_lo, px_hi),
            "page" => textimg::render_page(width, height, seed, px_lo, px_hi),
            other => {
                eprintln!("make-samples: unknown kind {other:?}; use lines, busy or page");
                std::process::exit(2);
            }
        };
        // Written under a temporary name and renamed, as a camera uploader should.
        let tmp = out.join(format!(".sample-{i:03}.jpg"));
        let dest = out.join(format!("sample-{i:03}.jpg"));
        img.save(&tmp).expect("write sample");
        std::fs::rename(&tmp, &dest).expect("rename sample");
        let truth: Vec<_> = boxes
            .iter()
            .map(|b| serde_json::json!({"text": b.text, "box": b.bbox}))
            .collect();
        println!("{}", serde_json::json!({"file": dest, "truth": truth}));
    }
}
