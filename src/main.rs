//! The `edgewatch` binary: the allocator, then the command line
//! (`src/cli/`).

use std::process::ExitCode;

/// Big buffers on huge pages, returned to the system when freed
/// (`src/runtime/hugepages.rs`).
#[global_allocator]
static ALLOC: edgewatch::runtime::HugePageAlloc = edgewatch::runtime::HugePageAlloc;

fn main() -> ExitCode {
    edgewatch::cli::main(edgewatch::runtime::Seams::default())
}
