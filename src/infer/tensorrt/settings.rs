//! The `[tensorrt]` section, and the decisions made from it and the machine:
//! precision, workspace, tactic sources, host memory, profile shapes.

use crate::base::issue::Issue;
use std::path::PathBuf;

use serde::Deserialize;

use super::cache::Precision;

const MIB: u64 = 1 << 20;

/// How inputs and outputs reach the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostMemory {
    /// Mapped on integrated GPUs (every Jetson), copies elsewhere.
    #[default]
    Auto,
    /// Zero-copy mapped host memory.
    Mapped,
    /// Pinned host buffers and copies.
    Copy,
}

/// Whether to build without cuBLAS/cuDNN tactics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tactics {
    /// Restricted when the memory budget cannot hold cuBLAS and cuDNN.
    #[default]
    Auto,
    /// Every tactic source.
    All,
    /// TensorRT's own kernels only.
    Restricted,
}

/// `[tensorrt]`: used when `model.backend = "tensorrt"`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorrtConfig {
    /// Engine cache folder; relative paths are relative to the config file.
    #[serde(default = "default_engines")]
    pub engines: PathBuf,
    /// `fp16` (default; FP32 where the GPU has no fast FP16) or `fp32`.
    #[serde(default)]
    pub precision: Precision,
    /// CUDA device index.
    #[serde(default)]
    pub device: u32,
    /// Builder workspace limit; lowered at build time to fit free RAM + swap.
    #[serde(default = "default_workspace_mb")]
    pub workspace_mb: u64,
    /// `auto`, `all` or `restricted`.
    #[serde(default)]
    pub tactics: Tactics,
    /// `auto`, `mapped` or `copy`.
    #[serde(default)]
    pub host_memory: HostMemory,
    /// A frame from the site's own camera for the FP16 check after a build;
    /// a generated test card when unset.
    #[serde(default)]
    pub reference_image: Option<PathBuf>,
    /// Largest mean absolute difference of the model output, engine vs CPU,
    /// on the reference frame (DB: probability units).
    #[serde(default = "default_tolerance")]
    pub max_mean_diff: f64,
    /// Share of detections that must agree (IoU ≥ 0.5, same class).
    #[serde(default = "default_agreement")]
    pub min_agreement: f64,
    /// A build running longer is stopped (the daemon stays on the CPU).
    #[serde(default = "default_build_timeout")]
    pub build_timeout_s: u64,
}

fn default_engines() -> PathBuf {
    PathBuf::from("engines")
}
fn default_workspace_mb() -> u64 {
    256
}
fn default_tolerance() -> f64 {
    0.02
}
fn default_agreement() -> f64 {
    0.9
}
fn default_build_timeout() -> u64 {
    3600
}

impl Default for TensorrtConfig {
    fn default() -> TensorrtConfig {
        toml::from_str("").expect("every key has a default")
    }
}

impl TensorrtConfig {
    /// Problems, keyed within `[tensorrt]`.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if !(16..=65536).contains(&self.workspace_mb) {
            out.push(Issue::new(
                "workspace_mb",
                format!(
                    "{} is not between 16 and 65536; 256 suits a Nano",
                    self.workspace_mb
                ),
            ));
        }
        if !(self.max_mean_diff > 0.0 && self.max_mean_diff <= 1.0) {
            out.push(Issue::new(
                "max_mean_diff",
                format!("{} is not in (0, 1]; try 0.02", self.max_mean_diff),
            ));
        }
        if !(self.min_agreement >= 0.0 && self.min_agreement <= 1.0) {
            out.push(Issue::new(
                "min_agreement",
                format!("{} is not in [0, 1]; try 0.9", self.min_agreement),
            ));
        }
        if self.build_timeout_s < 60 {
            out.push(Issue::new(
                "build_timeout_s",
                format!(
                    "{} s is too short for any build; a Nano takes minutes, try 3600",
                    self.build_timeout_s
                ),
            ));
        }
        if let Some(p) = &self.reference_image {
            if !p.is_file() {
                out.push(Issue::new(
                    "reference_image",
                    format!(
                        "{} is not a readable file; leave it out for the generated test card",
                        p.display()
                    ),
                ));
            }
        }
        out
    }
}

/// TensorRT's CPU-side cost with cuBLAS and cuDNN loaded (measured on a Nano
/// with TensorRT 8.2: 684 MB after cuDNN).
pub const RUNTIME_FULL_BYTES: u64 = 700 * MIB;
/// Without them (260 MB after CUDA init on the same Nano).
pub const RUNTIME_RESTRICTED_BYTES: u64 = 280 * MIB;

/// Whether to restrict tactic sources: `auto` restricts when the memory
/// budget cannot hold the full runtime and 512 MiB for everything else.
pub fn restrict_tactics(tactics: Tactics, budget: u64) -> bool {
    match tactics {
        Tactics::All => false,
        Tactics::Restricted => true,
        Tactics::Auto => budget < RUNTIME_FULL_BYTES + 512 * MIB,
    }
}

/// The precision built: FP16 only where the GPU runs it fast (compute
/// capability 5.3, 6.0, 6.2 and 7.0 up; not 6.1 consumer Pascal).
pub fn effective_precision(wanted: Precision, cc: (u32, u32)) -> Precision {
    let fast_fp16 = matches!(cc, (5, 3) | (6, 0) | (6, 2)) || cc.0 >= 7;
    match wanted {
        Precision::Fp16 if fast_fp16 => Precision::Fp16,
        _ => Precision::Fp32,
    }
}

/// Mapped zero-copy buffers or copies.
pub fn use_mapped(choice: HostMemory, integrated: bool, can_map: bool) -> bool {
    match choice {
        HostMemory::Mapped => true,
        HostMemory::Copy => false,
        HostMemory::Auto => integrated && can_map,
    }
}

/// RAM and swap the kernel says are free, from `/proc/meminfo` text.
pub fn free_memory(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    Some((field("MemAvailable:")?, field("SwapFree:").unwrap_or(0)))
}

/// Bytes this process's cgroup (v2) may still take: `memory.max` minus
/// `memory.current`, or `None` where there is no limit. systemd's
/// `MemoryMax` sets it for the daemon and its build child together, and
/// `/proc/meminfo` does not see it: a build sized from meminfo alone is
/// killed by the cgroup, not by the kernel's OOM killer.
pub fn cgroup_room(proc_self_cgroup: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<u64> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim();
    let dir = format!("/sys/fs/cgroup{}", if path == "/" { "" } else { path });
    let max = read(&format!("{dir}/memory.max"))?;
    let max: u64 = max.trim().parse().ok()?; // "max": no limit
    let current: u64 = read(&format!("{dir}/memory.current"))?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(current))
}

/// [`cgroup_room`] of this process.
pub fn cgroup_room_here() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_room(&own, &|p| std::fs::read_to_string(p).ok())
}

/// What the builder may use besides its workspace: the runtime, the parsed
/// network and tactic timing buffers.
pub fn build_overhead(restricted: bool, onnx_bytes: u64) -> u64 {
    let runtime = if restricted {
        RUNTIME_RESTRICTED_BYTES
    } else {
        RUNTIME_FULL_BYTES
    };
    runtime + 4 * onnx_bytes + 64 * MIB
}

/// Not even the smallest workspace fits in free RAM + swap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("only {} MiB of RAM + swap is free and a TensorRT build needs about {} MiB plus a 16 MiB workspace: add swap (sudo fallocate -l 4G /swapfile; mkswap; swapon) or stop other services, then run edgewatch build-engine", free / MIB, overhead / MIB)]
pub struct NoRoom {
    /// Free RAM + swap, bytes.
    pub free: u64,
    /// What the build needs beside its workspace, bytes.
    pub overhead: u64,
}

/// The workspace that fits next to `overhead` in free RAM + swap, and a line
/// for the log when it had to be lowered. Refuses when not even 16 MiB fit,
/// rather than be OOM-killed halfway (the Nano's best-known failure).
pub fn fit_workspace(
    wanted: u64,
    overhead: u64,
    ram_free: u64,
    swap_free: u64,
) -> Result<(u64, Option<String>), NoRoom> {
    let free = ram_free + swap_free;
    let room = free.saturating_sub(overhead);
    let floor = 16 * MIB;
    if room < floor {
        return Err(NoRoom { free, overhead });
    }
    if room >= wanted {
        return Ok((wanted, None));
    }
    let lowered = (room / MIB) * MIB;
    Ok((
        lowered,
        Some(format!(
            "workspace lowered from {} MiB to {} MiB to fit {} MiB free RAM + swap (builds may pick slower kernels)",
            wanted / MIB,
            lowered / MIB,
            free / MIB
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_limit_is_read_from_the_own_cgroup() {
        let files = |p: &str| match p {
            "/sys/fs/cgroup/system.slice/edgewatch.service/memory.max" => {
                Some("1610612736\n".to_string())
            }
            "/sys/fs/cgroup/system.slice/edgewatch.service/memory.current" => {
                Some("536870912\n".to_string())
            }
            "/sys/fs/cgroup/memory.max" => Some("max\n".to_string()),
            "/sys/fs/cgroup/memory.current" => Some("1\n".to_string()),
            _ => None,
        };
        let own = "0::/system.slice/edgewatch.service\n";
        assert_eq!(cgroup_room(own, &files), Some(1024 * MIB));
        // No limit, and cgroup v1 (no "0::" line): None.
        assert_eq!(cgroup_room("0::/\n", &files), None);
        assert_eq!(cgroup_room("4:memory:/x\n", &files), None);
    }

    #[test]
    fn defaults_and_validation_name_each_key() {
        let c = TensorrtConfig::default();
        assert_eq!(c.precision, Precision::Fp16);
        assert_eq!(c.workspace_mb, 256);
        assert!(c.validate().is_empty());
        let bad: TensorrtConfig = toml::from_str(
            "workspace_mb = 4\nmax_mean_diff = 0\nmin_agreement = 2\nbuild_timeout_s = 5\nreference_image = \"/nope.png\"",
        )
        .unwrap();
        let keys: Vec<String> = bad.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            [
                "workspace_mb",
                "max_mean_diff",
                "min_agreement",
                "build_timeout_s",
                "reference_image"
            ]
        );
        assert!(toml::from_str::<TensorrtConfig>("precision = \"int8\"").is_err());
    }

    #[test]
    fn fp16_only_where_the_gpu_is_fast_at_it() {
        assert_eq!(
            effective_precision(Precision::Fp16, (5, 3)),
            Precision::Fp16
        ); // Nano
        assert_eq!(
            effective_precision(Precision::Fp16, (8, 7)),
            Precision::Fp16
        ); // Orin
        assert_eq!(
            effective_precision(Precision::Fp16, (6, 1)),
            Precision::Fp32
        ); // GTX 1080
        assert_eq!(
            effective_precision(Precision::Fp32, (8, 7)),
            Precision::Fp32
        );
    }

    #[test]
    fn tactics_and_host_memory_follow_the_machine() {
        assert!(restrict_tactics(Tactics::Auto, 400 * MIB));
        assert!(!restrict_tactics(Tactics::Auto, 2048 * MIB));
        assert!(!restrict_tactics(Tactics::All, 0));
        assert!(restrict_tactics(Tactics::Restricted, u64::MAX));
        assert!(use_mapped(HostMemory::Auto, true, true));
        assert!(!use_mapped(HostMemory::Auto, false, true));
        assert!(!use_mapped(HostMemory::Copy, true, true));
    }

    #[test]
    fn reads_free_ram_and_swap() {
        let text = "MemTotal:        4059636 kB\nMemFree:          120000 kB\nMemAvailable:    1048576 kB\nSwapTotal:       2029816 kB\nSwapFree:         524288 kB\n";
        assert_eq!(free_memory(text), Some((1024 * MIB, 512 * MIB)));
        assert_eq!(free_memory("MemTotal: 1 kB\n"), None);
        let real = std::fs::read_to_string("/proc/meminfo").unwrap();
        let (ram, _) = free_memory(&real).unwrap();
        assert!(ram > 0);
    }

    #[test]
    fn workspace_is_lowered_to_fit_or_the_build_refused() {
        let overhead = build_overhead(true, 5 * MIB);
        // A Nano with room: the asked workspace.
        let (ws, note) = fit_workspace(256 * MIB, overhead, 2048 * MIB, 0).unwrap();
        assert_eq!(ws, 256 * MIB);
        assert!(note.is_none());
        // Tight: lowered, and said so.
        let (ws, note) = fit_workspace(256 * MIB, overhead, overhead + 100 * MIB, 0).unwrap();
        assert_eq!(ws, 100 * MIB);
        assert!(note.unwrap().contains("lowered from 256 MiB to 100 MiB"));
        // Swap counts.
        let (ws, _) = fit_workspace(256 * MIB, overhead, overhead, 256 * MIB).unwrap();
        assert_eq!(ws, 256 * MIB);
        // No room: refused with the fix.
        let err = fit_workspace(256 * MIB, overhead, 300 * MIB, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("add swap"), "{err}");
        assert!(!err.contains('\n'));
    }
}
