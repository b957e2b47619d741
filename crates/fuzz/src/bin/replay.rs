//! Runs saved fuzzer inputs through a harness outside AFL, printing each
//! file's outcome (accepted, refused, or the panic):
//!   cargo run -p fuzz --bin fuzz-replay -- FAMILY FILE...
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((family, files)) = args.split_first() else {
        eprintln!("usage: fuzz-replay FAMILY FILE...");
        std::process::exit(2);
    };
    let Some((_, harness)) = fuzz::FAMILIES.iter().find(|(f, _)| f == family) else {
        eprintln!("fuzz-replay: no family '{family}'");
        std::process::exit(2);
    };
    let mut failed = 0;
    for f in files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{f}: {e}");
                failed += 1;
                continue;
            }
        };
        match std::panic::catch_unwind(|| harness(&data)) {
            Ok(true) => println!("{f}: accepted"),
            Ok(false) => println!("{f}: refused"),
            Err(_) => {
                println!("{f}: PANIC");
                failed += 1;
            }
        }
    }
    std::process::exit(if failed > 0 { 1 } else { 0 });
}
