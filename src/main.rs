//! The `liveweb` binary: parse the CLI, validate, run the server.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // A panicking worker thread would leave the process serving on fewer cores, or on none,
    // while looking alive: log it and abort instead, so a supervisor restarts liveweb
    // (recovery keeps everything that was acknowledged).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let thread = std::thread::current();
        eprintln!(
            "liveweb: panic in thread {}; aborting",
            thread.name().unwrap_or("unnamed")
        );
        std::process::abort();
    }));
    let config = liveweb::config::Config::parse();
    if let Err(msg) = config.validate() {
        eprintln!("liveweb: {msg}");
        std::process::exit(2);
    }
    if let Err(e) = liveweb::server::run(config) {
        eprintln!("liveweb: {e}");
        std::process::exit(1);
    }
}
