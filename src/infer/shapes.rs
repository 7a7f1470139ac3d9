//! The input shapes a detector sends, in one place: the warm-up runs the
//! first, TensorRT's optimisation profile spans the rest. Both follow the
//! same tile plans as `Detector` (text tiles in every mode but `off`).

use super::model::{Head, LoadedModel};
use super::preprocess::whole_frame_size;
use super::tiling::{TilePlan, TilingConfig};
use super::{Family, ModelConfig};

/// The frames the profile is made for: 1080p, 4K and portrait 1080p.
const PROFILE_FRAMES: [(u32, u32); 3] = [(1920, 1080), (3840, 2160), (1080, 1920)];

/// The NCHW input of a 1080p frame, the most common one, tiled or whole:
/// what the model is warmed up with.
pub fn warm(model: &ModelConfig, tiling: &TilingConfig) -> [usize; 4] {
    let side = model.max_side;
    let (w, _) = whole_frame_size(1920, 1080, side);
    let tiled = if model.family == Family::Db {
        tiling.enabled()
    } else {
        tiling.tiles_frame(w as f64 / 1920.0)
    };
    if tiled {
        let plan = TilePlan::new(1920, 1080, tiling);
        let (h, w) = plan.shapes()[0];
        [tiling.batch as usize, 3, h as usize, w as usize]
    } else {
        let (w, h) = whole_frame_size(16 * side, 9 * side, side);
        [1, 3, h as usize, w as usize]
    }
}

/// Input profile `[min, opt, max]` (NCHW) for `loaded`: a fixed-input
/// model's own size; a letterboxed or cropped family (YOLO, classify) at
/// its one input size, whatever symbols the file declares; else from the
/// tiles and whole frames the detector will send. The batch never exceeds
/// the one a file fixes.
pub fn profile(model: &ModelConfig, tiling: &TilingConfig, loaded: &LoadedModel) -> [[u32; 4]; 3] {
    let spec = loaded.tract.input_spec();
    let batch = tiling.batch.min(spec.max_batch as u32).max(1);
    if let Some((h, w)) = spec.fixed_hw {
        let s = [1, 3, h as u32, w as u32];
        return [s, s, s];
    }
    if loaded.head != Head::Db {
        let s = [1, 3, loaded.input.1, loaded.input.0];
        return [s, s, s];
    }
    let warm = warm(model, tiling).map(|d| d as u32);
    let side = model.max_side;
    let mut max = [1, 3, side, side];
    if tiling.enabled() {
        for (fw, fh) in PROFILE_FRAMES {
            for (h, w) in TilePlan::new(fw, fh, tiling).shapes() {
                max = [max[0].max(batch), 3, max[2].max(h), max[3].max(w)];
            }
        }
    }
    let opt = [
        warm[0].min(max[0]),
        3,
        warm[2].min(max[2]),
        warm[3].min(max[3]),
    ];
    [[1, 3, 32, 32], opt, max]
}
