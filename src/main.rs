//! The `liveweb` binary: parse the CLI, validate, run the server; or `liveweb ca init DIR`,
//! `liveweb reindex DIR...`, `liveweb man`, `liveweb completions SHELL`.

use std::path::{Path, PathBuf};

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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "help") {
        std::process::exit(help(args.get(2).and_then(|a| a.to_str())));
    }
    if args.get(1).is_some_and(|a| a == "reindex") {
        let ReindexCli { dirs } = ReindexCli::parse_from(&args[1..]);
        std::process::exit(reindex(&dirs));
    }
    if args.get(1).is_some_and(|a| a == "man") {
        std::process::exit(man());
    }
    if args.get(1).is_some_and(|a| a == "completions") {
        let CompletionsCli { shell } = CompletionsCli::parse_from(&args[1..]);
        use clap::CommandFactory;
        let mut cmd = liveweb::config::Config::command();
        clap_complete::generate(shell, &mut cmd, "liveweb", &mut std::io::stdout());
        std::process::exit(0);
    }
    if args.get(1).is_some_and(|a| a == "ca") {
        let CaCli { command } = CaCli::parse_from(&args[1..]);
        std::process::exit(match command {
            CaCommand::Init { dir } => ca_init(&dir),
        });
    }
    let config = match liveweb::config::Config::try_parse() {
        Ok(config) => config,
        Err(e) => {
            if let Some(var) = invalid_env_var(&e) {
                eprintln!("liveweb: the environment variable {var} has an invalid value:");
            }
            e.exit();
        }
    };
    liveweb::logging::init(config.ops.log_level);
    if let Err(msg) = config.validate() {
        log::error!("{msg}");
        std::process::exit(2);
    }
    if let Err(e) = liveweb::server::run(config) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

/// `liveweb help [ca|reindex]`: the help of the server, or of a command.
fn help(command: Option<&str>) -> i32 {
    use clap::CommandFactory;
    let mut cmd = match command {
        None => liveweb::config::Config::command(),
        Some("ca") => CaCli::command(),
        Some("reindex") => ReindexCli::command(),
        Some("completions") => CompletionsCli::command(),
        Some(other) => {
            eprintln!(
                "liveweb: no command {other:?}; the commands are ca, reindex, man, completions, help"
            );
            return 2;
        }
    };
    match cmd.print_long_help() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// `liveweb man`: the manual page (roff) of the server and its options, with the commands.
fn man() -> i32 {
    use clap::CommandFactory;
    let cmd = liveweb::config::Config::command()
        .subcommand(CaCli::command().name("ca"))
        .subcommand(ReindexCli::command().name("reindex"));
    match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("liveweb: man: {e}");
            1
        }
    }
}

/// `liveweb completions SHELL`: completions of liveweb's options for a shell.
#[derive(Parser)]
#[command(
    name = "liveweb completions",
    bin_name = "liveweb completions",
    about = "Print completions of liveweb's options for SHELL, e.g. \
             liveweb completions bash > /etc/bash_completion.d/liveweb"
)]
struct CompletionsCli {
    shell: clap_complete::Shell,
}

/// When a bad value came from the environment rather than the command line: the variable's
/// name (clap's message names only the flag).
fn invalid_env_var(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?;
    let var = format!(
        "LIVEWEB_{}",
        flag.trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase()
    );
    let on_command_line = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    (!on_command_line && std::env::var_os(&var).is_some()).then_some(var)
}

/// `liveweb reindex DIR...`: rewrites the CDX files of sealed ARC files from the files.
#[derive(Parser)]
#[command(
    name = "liveweb reindex",
    bin_name = "liveweb reindex",
    about = "Rewrite the CDX (and .private list) of every sealed ARC file under each DIR from \
             the ARC file itself: a data directory (its sealed/ files) or any directory of \
             sealed files. CDX files from older versions get today's keys. Safe while liveweb \
             runs."
)]
struct ReindexCli {
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

fn reindex(dirs: &[PathBuf]) -> i32 {
    for dir in dirs {
        match liveweb::archive::reindex::reindex_tree(dir) {
            Ok(done) => println!(
                "{}: rewrote the CDX of {} sealed ARC files ({} captures)",
                dir.display(),
                done.files,
                done.captures
            ),
            Err(e) => {
                eprintln!("liveweb: reindex: {e}");
                return 1;
            }
        }
    }
    0
}

/// `liveweb ca`: the certificate authority for archiving HTTPS through CONNECT.
#[derive(Parser)]
#[command(
    name = "liveweb ca",
    bin_name = "liveweb ca",
    about = "The certificate authority liveweb signs intercepted sites' certificates with \
             (--mitm-ca, --mitm-key)."
)]
struct CaCli {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(clap::Subcommand)]
enum CaCommand {
    /// Write a new CA certificate and key (ECDSA P-256, mode 0600) into DIR; never replaces
    /// existing ones.
    Init { dir: PathBuf },
}

fn ca_init(dir: &Path) -> i32 {
    match liveweb::mitm::init_ca(dir) {
        Ok((cert, key)) => {
            let (cert, key) = (cert.display(), key.display());
            println!(
                "wrote {cert} (the CA certificate) and {key} (its private key), both mode 0600.

Anyone holding the key can impersonate any site to a client that trusts the certificate:
keep it on the proxy machine only. Trust the certificate in the clients that will use
liveweb (and in no others):
  curl:      curl --proxy http://127.0.0.1:8080 --cacert {cert} https://example.com/
  Chromium:  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n liveweb -i {cert}
             (certutil is in Debian's libnss3-tools)
  Firefox:   Settings > Privacy & Security > Certificates > View Certificates >
             Authorities > Import, then tick \"identify websites\"
  system:    cp {cert} /usr/local/share/ca-certificates/liveweb-ca.crt && update-ca-certificates"
            );
            0
        }
        Err(e) => {
            eprintln!("liveweb: ca init: {e}");
            1
        }
    }
}
