//! The `liveweb` binary: parse the CLI, validate, run the server.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
