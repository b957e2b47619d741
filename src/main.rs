//! The `genocnn` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Keeps freed memory in the process for reuse: training allocates and
/// frees the same large activation buffers every batch, and returning them
/// to the kernel each time costs more in page faults than the arithmetic.
/// One arena for every thread: the networks run on a worker of the thread
/// pool, and glibc's per-thread arenas (heaps of at most 64 MB) hand
/// buffers larger than that back to the kernel on every free. With them,
/// the peer genomic model's inference took 9× the page faults and ran at
/// 3,000–3,300 samples/s instead of 4,200–4,550.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `genocnn train|cv --resume DIR` runs the unfinished run's own command
    // line again, from where it stopped.
    let result = match cli::rundir::resumed_run(&argv) {
        Ok(Some((_, record))) => {
            let again = std::iter::once("genocnn".to_string()).chain(record.argv_again());
            cli::run(cli::Cli::parse_from(again), Some(record))
        }
        Ok(None) => cli::run(cli::Cli::parse(), None),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Library errors often quote their source already: print each
            // cause only when its text is new.
            let mut shown = err.to_string();
            eprintln!("error: {shown}");
            for cause in err.chain().skip(1) {
                let c = cause.to_string();
                if !shown.contains(&c) {
                    eprintln!("  caused by: {c}");
                    shown.push_str(&c);
                }
            }
            ExitCode::FAILURE
        }
    }
}
