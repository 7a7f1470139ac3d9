//! Tiled inference on the real model: small text in 4K frames, and a text
//! line across tile seams.

use crate::common;

use common::textimg::{draw_text, font, iou, recall, render, render_busy, TextBox};
use edgewatch::config::{Config, Purpose};
use edgewatch::infer::Detector;
use edgewatch::infer::LoadedModel;
use edgewatch::infer::{TilePlan, TilingConfig, TilingMode};
use edgewatch::runtime::detector_settings;

fn detector(tiling: TilingConfig) -> Detector {
    let toml = format!("[model]\npath = {:?}\nworkers = 1\n", common::model_path());
    let mut config = Config::from_toml(&toml, std::path::Path::new("."), Purpose::Detect)
        .expect("a valid config");
    config.tiling = tiling;
    let t = config.tiling.tile as usize;
    let model = LoadedModel::load(&config.model, [1, 3, t, t]).expect("load the model");
    let engine = model.tract.engine().unwrap();
    let settings = detector_settings(&config, 40_000_000, &model).expect("settings");
    Detector::new(Box::new(engine), settings)
}

fn boxes(det: &mut Detector, img: &image::RgbImage) -> Vec<[f32; 4]> {
    det.detect_rgb(img.clone())
        .expect("detect")
        .detections
        .iter()
        .map(|d| d.bbox)
        .collect()
}

#[test]
fn small_text_in_4k_frames_is_found_by_tiles_and_lost_by_whole_frame() {
    let frames: Vec<(image::RgbImage, Vec<TextBox>)> = (0..2)
        .map(|i| render(3840, 2160, 4000 + i, 40, 12, 20))
        .collect();
    let mut tiled = detector(TilingConfig::default());
    let mut whole = detector(TilingConfig {
        mode: TilingMode::Off,
        ..TilingConfig::default()
    });
    let mut guided = detector(TilingConfig {
        mode: TilingMode::Guided,
        ..TilingConfig::default()
    });
    let (mut r_tiled, mut r_whole, mut r_guided, mut n) = (0.0, 0.0, 0.0, 0.0);
    for (img, truth) in &frames {
        let t = recall(truth, &boxes(&mut tiled, img), 0.3);
        let w = recall(truth, &boxes(&mut whole, img), 0.3);
        let g = recall(truth, &boxes(&mut guided, img), 0.3);
        eprintln!(
            "{} lines of 12-20 px: recall tiled {t:.3}, whole-frame {w:.3}, guided {g:.3}",
            truth.len()
        );
        r_tiled += t * truth.len() as f32;
        r_whole += w * truth.len() as f32;
        r_guided += g * truth.len() as f32;
        n += truth.len() as f32;
    }
    let (r_tiled, r_whole, r_guided) = (r_tiled / n, r_whole / n, r_guided / n);
    eprintln!("overall: tiled {r_tiled:.3}, whole-frame {r_whole:.3}, guided {r_guided:.3}");
    assert!(n >= 60.0, "too few lines rendered: {n}");
    assert!(r_tiled >= 0.95, "tiled recall {r_tiled:.3} < 0.95");
    assert!(r_guided >= 0.95, "guided recall {r_guided:.3} < 0.95");
    assert!(
        r_whole <= 0.5,
        "whole-frame recall {r_whole:.3} is not clearly lower"
    );
}

#[test]
fn a_line_across_tile_seams_is_one_box() {
    let tiling = TilingConfig {
        tile: 320,
        overlap: 64,
        // 720p would run whole at 960; this test is about tile seams.
        whole_frame_min_scale: 1.0,
        ..TilingConfig::default()
    };
    let (w, h) = (1280, 720);
    let plan = TilePlan::new(w, h, &tiling);
    // Ownership seams along x and y, where a naive per-tile decode would cut.
    let x_seams: Vec<u32> = plan
        .tiles
        .iter()
        .filter(|t| t.y.start == 0 && t.x.own_start > 0)
        .map(|t| t.x.own_start)
        .collect();
    let y_seam = plan
        .tiles
        .iter()
        .map(|t| t.y.own_start)
        .find(|&s| s > 0)
        .unwrap();
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([235, 235, 228]));
    let text = "SEAM CROSSING LINE 4711-0815";
    let bbox = draw_text(
        &mut img,
        &font(),
        34.0,
        150.0,
        y_seam as f32 + 12.0,
        text,
        [20, 20, 30],
    )
    .unwrap();
    let crossed = x_seams
        .iter()
        .filter(|&&s| (bbox[0] as u32) < s && s < bbox[2] as u32)
        .count();
    assert!(crossed >= 2, "the line {bbox:?} crosses {crossed} x seams");
    assert!(bbox[1] < y_seam as f32 && (y_seam as f32) < bbox[3]);

    let mut det = detector(tiling);
    let found = boxes(&mut det, &img);
    let touching: Vec<&[f32; 4]> = found.iter().filter(|b| iou(**b, bbox) > 0.05).collect();
    assert_eq!(
        touching.len(),
        1,
        "expected one box over {bbox:?}, got {touching:?}"
    );
    assert!(
        iou(*touching[0], bbox) >= 0.5,
        "{:?} vs {bbox:?}",
        touching[0]
    );
}

#[test]
fn guided_finds_small_labels_on_a_busy_4k_scene_for_a_fraction_of_the_model_pixels() {
    // A cluttered warehouse scene, three paper labels of 12-20 px: the
    // coarse pass marks them (and some clutter), and only those places go
    // through the model at full resolution.
    let mut tiled = detector(TilingConfig::default());
    let mut guided = detector(TilingConfig {
        mode: TilingMode::Guided,
        ..TilingConfig::default()
    });
    let (mut px_tiled, mut px_guided) = (0u64, 0u64);
    for seed in [7000, 7001] {
        let (img, truth) = render_busy(3840, 2160, seed, 3, 12, 20);
        assert_eq!(truth.len(), 3);
        let t = tiled.detect_rgb(img.clone()).unwrap();
        let g = guided.detect_rgb(img.clone()).unwrap();
        let found = |r: &edgewatch::infer::FrameResult| -> Vec<[f32; 4]> {
            r.detections.iter().map(|d| d.bbox).collect()
        };
        let (rt, rg) = (
            recall(&truth, &found(&t), 0.3),
            recall(&truth, &found(&g), 0.3),
        );
        eprintln!(
            "seed {seed}: recall tiled {rt:.2} ({} px, {} runs), guided {rg:.2} ({} px, {} runs)",
            t.work.model_pixels, t.work.engine_runs, g.work.model_pixels, g.work.engine_runs
        );
        assert_eq!(
            rg,
            1.0,
            "guided found every label: {:?} vs {truth:?}",
            found(&g)
        );
        assert!(rg >= rt);
        px_tiled += t.work.model_pixels;
        px_guided += g.work.model_pixels;
    }
    assert!(
        (px_guided as f64) < 0.5 * px_tiled as f64,
        "guided used {px_guided} model pixels, tiles {px_tiled}"
    );
}

/// The TensorRT profile (`infer::shapes::profile`) spans every shape the
/// detector really sends: the warm-up shape is the optimum, and each tile of
/// a 1080p, 4K and portrait frame fits under the maximum. Run on tract, so
/// it holds without a GPU.
#[test]
fn the_tensorrt_profile_spans_every_tile_the_detector_sends() {
    let toml = format!("[model]\npath = {:?}\n", common::model_path());
    let config = Config::from_toml(&toml, std::path::Path::new("."), Purpose::Detect)
        .expect("the config loads");
    let warm = edgewatch::infer::warm(&config.model, &config.tiling);
    let model = LoadedModel::load(&config.model, warm).expect("load the model");
    let [min, opt, max] = edgewatch::infer::profile(&config.model, &config.tiling, &model);
    assert_eq!(min, [1, 3, 32, 32]);
    assert_eq!(
        opt.map(|d| d as usize),
        warm,
        "the warm-up shape is the optimum"
    );
    for (fw, fh) in [(1920, 1080), (3840, 2160), (1080, 1920)] {
        for (h, w) in TilePlan::new(fw, fh, &config.tiling).shapes() {
            assert!(
                h <= max[2] && w <= max[3] && h >= min[2] && w >= min[3],
                "{fw}x{fh}: tile {w}x{h} is outside the profile {min:?}..{max:?}"
            );
        }
    }
    assert!(max[0] >= 1 && max[0] <= config.tiling.batch.max(1));
    // A text detector tiles by default: the profile is made of tiles, not
    // of whole frames at max_side.
    let (h, w) = TilePlan::new(3840, 2160, &config.tiling).shapes()[0];
    assert!(max[2] >= h && max[3] >= w);
}
