//! The memory plan: one number, `memory_budget_mb`, split at start-up into
//! everything the daemon will hold, or refused naming the knob to turn.
//!
//! The costs are upper bounds measured on this model and backend (see the
//! docs/memory-and-tiling.md and `tests/it/memory_budget.rs`, which checks the
//! process's peak RSS against the plan). They hold because the allocator is
//! told to return every large buffer to the system when it is freed
//! (`release_large_buffers`), so a worker's peak is the largest of its phases,
//! not their sum, and does not creep from frame to frame.

use std::fmt;

use crate::infer::preprocess::DECODE_BYTES_PER_PIXEL;
use crate::infer::tiling::{TilingConfig, TilingMode};
use crate::infer::ModelConfig;

const MIB: u64 = 1 << 20;

/// Process, libraries, thread stacks, logging, metrics, MQTT client.
const RUNTIME_BYTES: u64 = 24 * MIB;
/// The parsed model is kept to build plans for new shapes: about three times
/// the ONNX file.
const MODEL_FILE_FACTOR: u64 = 3;
/// Each optimised plan holds its own packed weights.
const PLAN_FILE_FACTOR: u64 = 2;
/// Engine working memory per model-input pixel per image in a batch:
/// activations, input and output tensors (tract, PP-OCR det; measured
/// 77 B/px end to end, including the frame and post-processing).
const ENGINE_BYTES_PER_PIXEL: u64 = 72;
/// ONNX Runtime (`backend = "onnxruntime"`), measured on PP-OCR det here
/// with its CPU arena on and memory patterns off (infer/onnxruntime): the
/// library and environment, each worker's session (weights prepacked,
/// the arena's first blocks, kernel scratch), and its activations per
/// model-input pixel (the arena keeps the largest run's blocks).
const ORT_RUNTIME_BYTES: u64 = 40 * MIB;
const ORT_SESSION_BYTES: u64 = 40 * MIB;
const ORT_BYTES_PER_PIXEL: u64 = 112;
/// Stitched map (1 B/px) plus, after inference, the binary mask (1) and the
/// contour tracer's labels (4): per scaled frame pixel.
const POST_BYTES_PER_PIXEL: f64 = 6.0;
/// Outbox append buffers and the in-flight MQTT window.
const SINK_BYTES: u64 = 8 * MIB;
/// Watcher, queues and paths of one folder source.
const SOURCE_BYTES: u64 = MIB;
/// Share of the budget kept back for what the estimates do not see.
const HEADROOM_PERCENT: u64 = 5;
/// Smallest frame a plan must admit at full size.
const MIN_PIXELS: u64 = 1024 * 1024;
/// Largest `max_pixels` a plan grants on its own (about 8K UHD).
const MAX_AUTO_PIXELS: u64 = 7680 * 4320;
/// Frames a plan with several workers should still take at full size.
const TARGET_TILED: u64 = 3840 * 2160;
const TARGET_WHOLE: u64 = 1920 * 1080;
/// Most tract plans cached at once (`infer/tract.rs`).
const MAX_PLANS: u64 = 4;

/// What goes into the plan besides the budget.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// `memory_budget_mb`.
    pub budget_mb: u64,
    /// The model section (workers, max_side).
    pub model: &'a ModelConfig,
    /// Size of the model file in bytes.
    pub model_bytes: u64,
    /// The tiling section.
    pub tiling: &'a TilingConfig,
    /// `max_pixels` when the operator set it.
    pub max_pixels: Option<u64>,
    /// Configured sources.
    pub sources: usize,
    /// Frame buffers camera and replay sources hold outside the workers.
    pub stream_bytes: u64,
    /// A GPU backend's own cost (TensorRT runtime, engine, activations),
    /// planned as one fixed item.
    pub accelerator: Option<Item>,
    /// A second model on the boxes' crops (`[read]`): its weights and one
    /// batch of crops.
    pub second_stage: Option<Item>,
    /// CPU cores available.
    pub cores: usize,
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What it is.
    pub name: String,
    /// Bytes.
    pub bytes: u64,
    /// How it was sized.
    pub detail: String,
}

/// The memory plan the daemon runs under.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// The budget, bytes.
    pub budget: u64,
    /// Inference workers.
    pub workers: usize,
    /// Largest frame decoded at full size.
    pub max_pixels: u64,
    /// Every pool, summing to at most `budget`.
    pub items: Vec<Item>,
}

impl MemoryPlan {
    /// Sum of the items.
    pub fn total(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }

    /// The plan on one log line.
    pub fn summary(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|i| format!("{} {:.1}", i.name, i.bytes as f64 / MIB as f64))
            .collect();
        format!(
            "memory plan: {} worker(s), max_pixels {:.1} MP; {} = {:.1} of {} MiB",
            self.workers,
            self.max_pixels as f64 / 1e6,
            items.join(" + "),
            self.total() as f64 / MIB as f64,
            self.budget / MIB
        )
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "memory plan: {} worker(s), max_pixels {} ({:.1} MP), budget {} MiB",
            self.workers,
            self.max_pixels,
            self.max_pixels as f64 / 1e6,
            self.budget / MIB
        )?;
        for item in &self.items {
            writeln!(
                f,
                "  {:<22} {:>7.1} MiB  {}",
                item.name,
                item.bytes as f64 / MIB as f64,
                item.detail
            )?;
        }
        write!(
            f,
            "  {:<22} {:>7.1} MiB  of {} MiB",
            "total",
            self.total() as f64 / MIB as f64,
            self.budget / MIB
        )
    }
}

/// Why no plan fits, with the knob to turn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct PlanError {
    /// The config key most worth changing.
    pub key: &'static str,
    /// What does not fit and what to do.
    pub reason: String,
}

/// Per-worker costs for a given `max_pixels`.
struct WorkerCost {
    engine: u64,
    engine_detail: String,
    scale2: f64,
}

impl WorkerCost {
    fn new(model: &ModelConfig, tiling: &TilingConfig) -> WorkerCost {
        let side = model.max_side as u64;
        let (per_pixel, session) = if model.backend == crate::infer::Backend::Onnxruntime {
            (ORT_BYTES_PER_PIXEL, ORT_SESSION_BYTES)
        } else {
            (ENGINE_BYTES_PER_PIXEL, 0)
        };
        let whole = (per_pixel + 5) * side * side + session;
        let (engine, engine_detail, scale2) = if tiling.mode == TilingMode::Off {
            (whole, format!("whole frame at max_side {side}"), 0.0)
        } else {
            let t = tiling.tile as u64;
            let b = tiling.batch as u64;
            // Resampling crops into a tile-sized buffer when scale != 1.
            let mut e = per_pixel * b * t * t + 3 * t * t + session;
            let mut d = format!("{b} x {t}x{t} tile(s) per run");
            if tiling.full_frame {
                e = e.max(whole);
                d.push_str(&format!(", whole-frame pass at {side}"));
            } else if tiling.mode == TilingMode::Auto && model.family != crate::infer::Family::Db {
                // Box models run frames the model sees well enough whole.
                e = e.max(whole);
                d.push_str(&format!(" or the whole frame at {side}"));
            }
            let mut scale2 = (tiling.scale as f64).powi(2);
            if tiling.mode == TilingMode::Guided {
                // The coarse pass runs in tiles too; its map is kept beside
                // the fine one.
                let coarse = crate::infer::guided::coarse_scale(tiling.min_text_px, tiling.scale);
                scale2 += (coarse as f64).powi(2);
                d.push_str(&format!(", a coarse pass at scale {coarse:.2}"));
            }
            (e, d, scale2)
        };
        WorkerCost {
            engine,
            engine_detail,
            scale2,
        }
    }

    /// A worker's peak: the largest of its decode, inference and
    /// post-processing phases, which do not overlap in time.
    fn peak(&self, pixels: u64) -> u64 {
        let p = pixels as f64;
        let decode = DECODE_BYTES_PER_PIXEL as f64 * p;
        let stitch = if self.scale2 > 0.0 {
            self.scale2 * p
        } else {
            0.0
        };
        let infer = 3.0 * p + stitch + self.engine as f64;
        let post = POST_BYTES_PER_PIXEL * self.scale2 * p;
        decode.max(infer).max(post).ceil() as u64
    }
}

fn fixed_items(input: &PlanInput<'_>) -> Vec<Item> {
    let plans = match input.tiling.mode {
        // ONNX Runtime runs the frames: tract optimises one shape at load
        // (to check the model's output) and drops it (`use_engines`).
        _ if input.model.backend == crate::infer::Backend::Onnxruntime => 1,
        TilingMode::Tiles => 1 + input.tiling.full_frame as u64 + (input.tiling.batch > 1) as u64,
        _ => MAX_PLANS,
    };
    let mut items = fixed_cpu_items(input, plans);
    items.extend(input.accelerator.clone());
    items.extend(input.second_stage.clone());
    items
}

fn fixed_cpu_items(input: &PlanInput<'_>, plans: u64) -> Vec<Item> {
    vec![
        Item {
            name: "runtime".into(),
            bytes: RUNTIME_BYTES,
            detail: "process, threads, logging, metrics".into(),
        },
        Item {
            name: "model".into(),
            bytes: MODEL_FILE_FACTOR * input.model_bytes
                + PLAN_FILE_FACTOR * input.model_bytes * plans,
            detail: format!(
                "{:.1} MiB ONNX, {plans} optimised shape(s)",
                input.model_bytes as f64 / MIB as f64
            ),
        },
        Item {
            name: "sink".into(),
            bytes: SINK_BYTES,
            detail: "outbox writes, MQTT in-flight window".into(),
        },
        Item {
            name: "sources".into(),
            bytes: SOURCE_BYTES * input.sources as u64 + input.stream_bytes,
            detail: if input.stream_bytes > 0 {
                format!(
                    "{} source(s), {:.1} MiB camera frames",
                    input.sources,
                    input.stream_bytes as f64 / MIB as f64
                )
            } else {
                format!("{} source(s)", input.sources)
            },
        },
        Item {
            name: "headroom".into(),
            bytes: input.budget_mb * MIB * HEADROOM_PERCENT / 100,
            detail: format!("{HEADROOM_PERCENT}% kept back"),
        },
    ]
}

/// Plans `input`, or says which knob to turn.
pub fn plan(input: &PlanInput<'_>) -> Result<MemoryPlan, PlanError> {
    let budget = input.budget_mb * MIB;
    let fixed = fixed_items(input);
    let fixed_total: u64 = fixed.iter().map(|i| i.bytes).sum();
    let cost = WorkerCost::new(input.model, input.tiling);
    let fits =
        |workers: usize, pixels: u64| fixed_total + workers as u64 * cost.peak(pixels) <= budget;
    // Largest max_pixels that fits `workers`, if at least MIN_PIXELS does.
    let best_pixels = |workers: usize| -> Option<u64> {
        if !fits(workers, MIN_PIXELS) {
            return None;
        }
        let (mut lo, mut hi) = (MIN_PIXELS, MAX_AUTO_PIXELS);
        if fits(workers, hi) {
            return Some(hi);
        }
        while hi - lo > 1024 {
            let mid = lo + (hi - lo) / 2;
            if fits(workers, mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    };
    let target = if input.tiling.mode == TilingMode::Off {
        TARGET_WHOLE
    } else {
        TARGET_TILED
    };
    let headroom: u64 = fixed
        .iter()
        .filter(|i| i.name == "headroom")
        .map(|i| i.bytes)
        .sum();
    // The budget that would hold this, headroom included.
    let need_mb = |workers: usize, pixels: u64| {
        (fixed_total - headroom + workers as u64 * cost.peak(pixels)) * 100
            / (100 - HEADROOM_PERCENT)
            / MIB
            + 1
    };
    let (workers, max_pixels) = match (input.model.workers, input.max_pixels) {
        (Some(w), Some(p)) => {
            if !fits(w, p) {
                return Err(PlanError {
                    key: "memory_budget_mb",
                    reason: format!(
                        "{} MiB cannot hold {w} worker(s) at max_pixels {p}: that needs {} MiB; raise memory_budget_mb, or lower max_pixels, model.workers or tiling.tile",
                        input.budget_mb,
                        need_mb(w, p)
                    ),
                });
            }
            (w, p)
        }
        (Some(w), None) => match best_pixels(w) {
            Some(p) => (w, p),
            None => {
                return Err(PlanError {
                    key: "memory_budget_mb",
                    reason: format!(
                        "{} MiB cannot hold {w} worker(s) with {} each ({}) and a 1 MP frame: that needs {} MiB; raise memory_budget_mb, or lower model.workers, tiling.tile, tiling.batch or model.max_side",
                        input.budget_mb,
                        mib(cost.engine),
                        cost.engine_detail,
                        need_mb(w, MIN_PIXELS)
                    ),
                })
            }
        },
        (None, pixels) => {
            // The most workers (up to one per core) that still take a
            // full-size target frame; one worker if none do.
            let want = pixels.unwrap_or(target);
            let most = (1..=input.cores.max(1))
                .rev()
                .find(|&w| fits(w, want))
                .unwrap_or(1);
            match pixels {
                Some(p) if !fits(most, p) => {
                    return Err(PlanError {
                        key: "max_pixels",
                        reason: format!(
                            "max_pixels {p} does not fit {} MiB even with one worker (needs {} MiB); lower max_pixels or raise memory_budget_mb",
                            input.budget_mb,
                            need_mb(1, p)
                        ),
                    })
                }
                Some(p) => (most, p),
                None => match best_pixels(most) {
                    Some(p) => (most, p),
                    None => {
                        return Err(PlanError {
                            key: "memory_budget_mb",
                            reason: format!(
                                "{} MiB cannot hold one worker with {} ({}) and a 1 MP frame: that needs {} MiB; raise memory_budget_mb, or lower tiling.tile, tiling.batch or model.max_side",
                                input.budget_mb,
                                mib(cost.engine),
                                cost.engine_detail,
                                need_mb(1, MIN_PIXELS)
                            ),
                        })
                    }
                },
            }
        }
    };
    let mut items = fixed;
    let frame = cost.peak(max_pixels);
    items.push(Item {
        name: "workers".into(),
        bytes: workers as u64 * frame,
        detail: format!(
            "{workers} x {} (engine {}: {}; frame {:.1} MP: decode, stitch, post)",
            mib(frame),
            mib(cost.engine),
            cost.engine_detail,
            max_pixels as f64 / 1e6
        ),
    });
    Ok(MemoryPlan {
        budget,
        workers,
        max_pixels,
        items,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Makes the C allocator hand every buffer of 256 KiB or more straight back to
/// the system when it is freed. glibc otherwise raises that threshold as big
/// buffers come and go and keeps them in its heaps, where fragments pile up:
/// measured here, ten 960×960 frames on one worker peaked at 270 MB with the
/// default and 116 MB with this. The cost is page faults on fresh buffers,
/// which the benchmark figures in CONTRIBUTING.md include.
pub fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 0 keeps glibc's default: faster, but the plan no longer holds.
        let kb: i32 = std::env::var("EDGEWATCH_MMAP_THRESHOLD_KB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        if kb > 0 {
            // SAFETY: mallopt only changes allocator tunables; called once at start-up.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, kb * 1024);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
            }
        }
    }
}

/// The memory plan's `tensorrt` line: the runtime (with or without cuBLAS
/// and cuDNN), the engine's weights (at most the ONNX file's size: FP16
/// halves it) and its activations for the largest input (72 B per input
/// pixel and image, the CPU engine's measured figure; FP16 needs less). On a
/// Jetson the GPU's memory is the same RAM, so all of it counts.
pub fn tensorrt_item(
    cfg: &crate::infer::tensorrt::settings::TensorrtConfig,
    budget_mb: u64,
    onnx_bytes: u64,
    max_side: u32,
    batch: u32,
) -> Item {
    let restricted =
        crate::infer::tensorrt::settings::restrict_tactics(cfg.tactics, budget_mb * MIB);
    let runtime = if restricted {
        crate::infer::tensorrt::settings::RUNTIME_RESTRICTED_BYTES
    } else {
        crate::infer::tensorrt::settings::RUNTIME_FULL_BYTES
    };
    let pixels = max_side as u64 * max_side as u64 * batch.max(1) as u64;
    let activations = 72 * pixels;
    Item {
        name: "tensorrt".into(),
        bytes: runtime + onnx_bytes + activations,
        detail: format!(
            "runtime {} MiB ({}), engine {:.1} MiB, activations {:.1} MiB",
            runtime / MIB,
            if restricted {
                "no cuBLAS/cuDNN"
            } else {
                "with cuBLAS/cuDNN"
            },
            onnx_bytes as f64 / MIB as f64,
            activations as f64 / MIB as f64
        ),
    }
}

/// The memory plan's `onnxruntime` line: the library and its environment
/// (each worker's session and activations are in the worker's share).
pub fn onnxruntime_item() -> Item {
    Item {
        name: "onnxruntime".into(),
        bytes: ORT_RUNTIME_BYTES,
        detail: format!(
            "library and environment; each worker's session {} MiB and {ORT_BYTES_PER_PIXEL} B per model pixel",
            ORT_SESSION_BYTES / MIB
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn model(workers: Option<usize>) -> ModelConfig {
        ModelConfig {
            workers,
            ..ModelConfig::new(PathBuf::from("m.onnx"))
        }
    }

    fn input<'a>(
        budget_mb: u64,
        model: &'a ModelConfig,
        tiling: &'a TilingConfig,
        cores: usize,
    ) -> PlanInput<'a> {
        PlanInput {
            budget_mb,
            model,
            model_bytes: 4_745_517,
            tiling,
            max_pixels: None,
            sources: 1,
            stream_bytes: 0,
            accelerator: None,
            second_stage: None,
            cores,
        }
    }

    #[test]
    fn the_default_budget_takes_4k_frames_on_one_worker() {
        let m = model(None);
        let t = TilingConfig::default();
        let p = plan(&input(256, &m, &t, 2)).unwrap();
        assert_eq!(p.workers, 1, "{p}");
        assert!(p.max_pixels >= 3840 * 2160, "{p}");
        assert!(p.total() <= p.budget, "{p}");
        // More memory buys a second worker.
        let p = plan(&input(512, &m, &t, 2)).unwrap();
        assert_eq!(p.workers, 2, "{p}");
        assert!(p.total() <= p.budget);
    }

    #[test]
    fn guided_takes_4k_on_the_default_budget_and_counts_its_coarse_map() {
        let m = model(None);
        let auto = TilingConfig::default();
        let guided = TilingConfig {
            mode: TilingMode::Guided,
            ..TilingConfig::default()
        };
        let a = plan(&input(256, &m, &auto, 2)).unwrap();
        let g = plan(&input(256, &m, &guided, 2)).unwrap();
        assert!(g.max_pixels >= 3840 * 2160, "{g}");
        assert!(g.total() <= g.budget, "{g}");
        assert!(g.to_string().contains("coarse pass at scale 0.60"), "{g}");
        // No whole-frame pass at max_side, but a second (coarse) map: a
        // 4K frame costs about what it costs in `auto`.
        let cost = |p: &MemoryPlan| WorkerCost::new(&m, if p == &g { &guided } else { &auto });
        assert!(cost(&g).peak(3840 * 2160) <= cost(&a).peak(3840 * 2160) * 11 / 10);
    }

    #[test]
    fn a_budget_too_small_names_the_knob_and_the_need() {
        let m = model(None);
        let t = TilingConfig::default();
        let e = plan(&input(128, &m, &t, 2)).unwrap_err();
        assert_eq!(e.key, "memory_budget_mb");
        assert!(e.reason.contains("tiling.tile"), "{}", e.reason);
        let need: u64 = e
            .reason
            .split("needs ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        // The figure it names is enough.
        assert!(plan(&input(need, &m, &t, 2)).is_ok(), "{}", e.reason);
        // Smaller tiles fit where big ones do not (always tiling: `auto`
        // also budgets for a whole frame at max_side).
        let small = TilingConfig {
            tile: 320,
            overlap: 64,
            mode: crate::infer::tiling::TilingMode::Tiles,
            ..TilingConfig::default()
        };
        assert!(plan(&input(128, &m, &small, 2)).is_ok());
    }

    #[test]
    fn explicit_workers_and_pixels_are_checked_not_changed() {
        let m = model(Some(3));
        let t = TilingConfig::default();
        let e = plan(&input(256, &m, &t, 2)).unwrap_err();
        assert!(e.reason.contains("model.workers"), "{}", e.reason);
        let mut i = input(1024, &m, &t, 2);
        i.max_pixels = Some(2_000_000);
        let p = plan(&i).unwrap();
        assert_eq!((p.workers, p.max_pixels), (3, 2_000_000));
        let auto = model(None);
        let mut i = input(256, &auto, &t, 2);
        i.max_pixels = Some(200_000_000);
        assert_eq!(plan(&i).unwrap_err().key, "max_pixels");
    }

    #[test]
    fn batch_and_scale_cost_memory() {
        let m = model(Some(1));
        let one = plan(&input(384, &m, &TilingConfig::default(), 2)).unwrap();
        let four = TilingConfig {
            batch: 4,
            ..TilingConfig::default()
        };
        let four = plan(&input(384, &m, &four, 2)).unwrap();
        assert!(four.max_pixels < one.max_pixels, "{four}");
        let twice = TilingConfig {
            scale: 2.0,
            ..TilingConfig::default()
        };
        let twice = plan(&input(384, &m, &twice, 2)).unwrap();
        assert!(twice.max_pixels < one.max_pixels / 2, "{twice}");
    }
}
