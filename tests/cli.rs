//! The command line a person reads: `--help` grouped under headings with the commands in the
//! usage, `liveweb help [COMMAND]`, and each command's own usage line.

use std::process::Command;

fn liveweb(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .args(args)
        .output()
        .expect("run liveweb");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn help_is_grouped_and_names_the_commands() {
    let (ok, help) = liveweb(&["--help"]);
    assert!(ok, "{help}");
    for heading in [
        "Listening and clients:",
        "Archive and storage:",
        "Fetching and upstreams:",
        "Cache:",
        "TLS and MITM:",
        "Scheduling:",
        "Operations:",
    ] {
        assert!(
            help.lines().any(|l| l == heading),
            "no {heading:?} in\n{help}"
        );
    }
    for usage in [
        "liveweb ca init DIR",
        "liveweb reindex DIR...",
        "liveweb help [ca|reindex]",
        "liveweb man",
        "liveweb completions SHELL",
    ] {
        assert!(help.contains(usage), "{usage:?} not in the usage");
    }
    // Under its heading, not in one flat list.
    let section = help.split("TLS and MITM:").nth(1).unwrap();
    assert!(
        section.trim_start().starts_with("--upstream-ca"),
        "{section}"
    );

    let (ok, same) = liveweb(&["help"]);
    assert!(ok);
    assert_eq!(same, help, "`liveweb help` is `liveweb --help`");
    let (ok, ca) = liveweb(&["help", "ca"]);
    assert!(ok && ca.contains("Usage: liveweb ca <COMMAND>"), "{ca}");
    let (ok, ca) = liveweb(&["ca", "--help"]);
    assert!(ok && ca.contains("Usage: liveweb ca <COMMAND>"), "{ca}");
    let (ok, reindex) = liveweb(&["help", "reindex"]);
    assert!(
        ok && reindex.contains("Usage: liveweb reindex"),
        "{reindex}"
    );
    let (ok, unknown) = liveweb(&["help", "nope"]);
    assert!(
        !ok && unknown.contains("the commands are ca, reindex, man, completions, help"),
        "{unknown}"
    );
}

/// docs/configuration.md lists every flag the binary takes, under its own name, and no flag
/// the binary does not take: the manual and the code cannot drift apart.
#[test]
fn the_configuration_page_lists_every_flag() {
    use clap::CommandFactory;
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let flags: Vec<String> = liveweb::config::Config::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .filter(|l| l != "--help" && l != "--version")
        .collect();
    assert!(flags.len() > 50, "{flags:?}");
    for flag in &flags {
        assert!(
            page.contains(&format!("`{flag}")),
            "{flag} is not in docs/configuration.md"
        );
    }
    // Every `--flag` row of the table is a real flag.
    for row in page.lines().filter(|l| l.starts_with("| `--")) {
        let name: String = row[3..]
            .chars()
            .take_while(|c| *c == '-' || c.is_ascii_alphanumeric())
            .collect();
        assert!(
            flags.contains(&name),
            "{name} is in the table but not a flag"
        );
    }
}

/// `liveweb man` prints a manual page with every flag and the commands; `liveweb
/// completions SHELL` completes every flag, and names the shells it knows when asked for
/// another.
#[test]
fn the_manual_page_and_completions_cover_every_flag() {
    use clap::CommandFactory;
    let (ok, man) = liveweb(&["man"]);
    assert!(ok, "{man}");
    assert!(
        man.contains(".TH liveweb 1"),
        "roff: {}",
        &man[..200.min(man.len())]
    );
    let (ok, bash) = liveweb(&["completions", "bash"]);
    assert!(ok, "{bash}");
    for arg in liveweb::config::Config::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        assert!(
            man.contains(&long.replace('-', "\\-")),
            "--{long} not in the man page"
        );
        assert!(
            bash.contains(&format!("--{long}")),
            "--{long} not completed"
        );
    }
    for command in ["liveweb\\-ca", "liveweb\\-reindex"] {
        assert!(man.contains(command), "{command} not in the man page");
    }
    let (ok, zsh) = liveweb(&["completions", "zsh"]);
    assert!(ok && zsh.contains("#compdef liveweb"), "{zsh}");
    let (ok, err) = liveweb(&["completions", "tcsh"]);
    assert!(!ok && err.contains("bash") && err.contains("fish"), "{err}");
}

/// A start that fails (its address taken) leaves no data directory behind.
#[test]
fn a_failed_start_leaves_nothing_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("new-data");
    let out = Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .args(["--listen", &addr, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("already in use"), "{said}");
    assert!(!data.exists(), "the data dir was left: {said}");
}

/// A data directory liveweb can lock but whose worker directory it cannot write: refused at
/// start, naming the directory, instead of starting and failing every miss with `E50`.
#[test]
fn an_unwritable_worker_directory_is_refused_at_start_with_its_path() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("0")).unwrap();
    for (dir, mode) in [
        (tmp.path().to_path_buf(), 0o777),
        (data.clone(), 0o777),
        (data.join("0"), 0o555),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // As root every directory is writable: run it as nobody.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_liveweb"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_liveweb"))
    };
    let out = cmd
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--data-dir"])
        .arg(&data)
        .output()
        .expect("setpriv (util-linux) must be installed");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {said}");
    let path = data.join("0");
    assert!(
        said.contains(&format!(
            "{} is not writable: Permission denied",
            path.display()
        )),
        "{said}"
    );
}

/// packaging/liveweb.default (the .deb's /etc/default/liveweb) names every setting's
/// environment variable, each commented out at its default, and nothing that is not one.
#[test]
fn the_packaged_environment_file_names_every_setting() {
    use clap::CommandFactory;
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/liveweb.default"
    ))
    .expect("packaging/liveweb.default");
    let vars: Vec<String> = liveweb::config::Config::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    assert!(vars.len() > 50, "{vars:?}");
    for var in &vars {
        assert!(
            file.lines().any(|l| l.starts_with(&format!("#{var}="))),
            "{var} is not in packaging/liveweb.default"
        );
    }
    for line in file
        .lines()
        .filter(|l| l.starts_with("#LIVEWEB_") || l.starts_with("LIVEWEB_"))
    {
        let name = line.trim_start_matches('#').split('=').next().unwrap();
        assert!(vars.iter().any(|v| v == name), "{name} is not a setting");
    }
}
