//! A newcomer's first hour: `stackhook new NAME` with no flags generates a
//! provider, and the "Next:" steps it prints work when followed as they are
//! written: its own tests pass against the mock ROS, and the generated
//! scenario passes against the provider running for real. The one liberty
//! taken: the provider listens on an ephemeral port, which the step after
//! it is pointed at. Builds the generated crate offline against this
//! checkout, with its target directory under `target/scaffold` so later runs
//! reuse the dependencies. Skipped (with a message) where cargo is not
//! available.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

/// Long enough for `cargo run` to link the provider on a loaded machine.
const PROVIDER_START: Duration = Duration::from_secs(300);

fn cargo() -> Option<PathBuf> {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let works = Command::new(&cargo)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some(cargo)
}

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .expect("the checkout")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One printed step: environment assignments, the program and its arguments.
struct Step {
    env: Vec<(String, String)>,
    program: String,
    args: Vec<String>,
}

/// The commands after `Next:`, comments dropped; `(…)` lines are notes.
fn next_steps(printed: &str) -> (Vec<Step>, Vec<String>) {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for line in printed.lines().skip_while(|l| l.trim() != "Next:").skip(1) {
        let line = line.trim();
        if line.starts_with('(') {
            notes.push(line.to_string());
            continue;
        }
        let command = line.split("  #").next().unwrap_or("").trim();
        if command.is_empty() {
            continue;
        }
        let mut words = command.split_whitespace().peekable();
        let mut env = Vec::new();
        while let Some((name, value)) = words.peek().and_then(|w| w.split_once('=')) {
            env.push((name.to_string(), value.to_string()));
            words.next();
        }
        let program = words.next().expect("a program").to_string();
        steps.push(Step {
            env,
            program,
            args: words.map(String::from).collect(),
        });
    }
    (steps, notes)
}

#[test]
fn scaffolded_provider_passes_its_own_tests_offline() {
    let Some(cargo) = cargo() else {
        assert!(
            std::env::var("CI").is_err(),
            "cargo is not available, and CI must run this test"
        );
        eprintln!("skipped: cargo is not available here");
        return;
    };
    let checkout = checkout();
    let stackhook = common::stackhook_bin();
    let dir = tempfile::tempdir().expect("tempdir");

    // `stackhook new NAME`, with no flags, from an empty directory.
    let output = Command::new(&stackhook)
        .args(["new", "demo-provider"])
        .current_dir(dir.path())
        .output()
        .expect("run stackhook new");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{}", text(&output));
    assert!(printed.contains("Custom::DemoProvider"), "{printed}");
    let project = dir.path().join("demo-provider");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "src/main.rs",
        "tests/lifecycle.rs",
        "Dockerfile",
        ".dockerignore",
        "s.yaml",
        "template.yaml",
        "scenario.yaml",
        "README.md",
    ] {
        assert!(project.join(file).is_file(), "{file} was not generated");
    }
    // The core in dependencies, the kit in dev-dependencies, both copied
    // from this checkout into vendor/; production journals to disk.
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("Cargo.toml");
    let (normal, dev) = manifest
        .split_once("[dev-dependencies]")
        .expect("dev-dependencies");
    assert!(normal.contains("stackhook = \"0.1"), "{normal}");
    assert!(!normal.contains("stackhook-testing"), "{normal}");
    assert!(dev.contains("stackhook-testing = \"0.1"), "{dev}");
    for name in ["stackhook", "stackhook-smq", "stackhook-testing"] {
        let vendored =
            std::fs::read_to_string(project.join("vendor").join(name).join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("vendor/{name}/Cargo.toml: {e}"));
        assert!(!vendored.contains("workspace = true"), "{vendored}");
        assert!(
            dev.contains(&format!("{name} = {{ path = \"vendor/{name}\" }}")),
            "{dev}"
        );
    }
    let main = std::fs::read_to_string(project.join("src/main.rs")).expect("main.rs");
    assert!(main.contains("JournalMode::Disk"), "{main}");
    // Its Dockerfile copies the project alone, and .dockerignore keeps what
    // the build needs.
    let dockerfile = std::fs::read_to_string(project.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("docker build -t demo-provider ."),
        "{dockerfile}"
    );
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        assert!(
            line == "COPY . ." || line.starts_with("COPY --from=build "),
            "the image copies something from outside its context: {line}"
        );
    }
    let dockerignore =
        std::fs::read_to_string(project.join(".dockerignore")).expect(".dockerignore");
    for needed in ["vendor", "Cargo", "src", "tests"] {
        assert!(
            !dockerignore
                .lines()
                .any(|l| l.trim_start_matches('/').starts_with(needed)),
            ".dockerignore leaves out {needed}: {dockerignore}"
        );
    }

    // A second run must not overwrite the project.
    let again = Command::new(&stackhook)
        .args(["new", "demo-provider"])
        .current_dir(dir.path())
        .output()
        .expect("run stackhook new");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let (steps, notes) = next_steps(&printed);
    // The note on putting `stackhook` on PATH names a package with that binary.
    let install = notes
        .iter()
        .find_map(|n| n.split("cargo install --path ").nth(1))
        .expect("how to install stackhook")
        .trim_end_matches(')');
    let cli = std::fs::read_to_string(Path::new(install).join("Cargo.toml")).expect("CLI manifest");
    assert!(cli.contains("name = \"stackhook\""), "{install}: {cli}");

    // Pin the same dependency versions as this checkout, so the build works
    // offline and reuses what is already compiled.
    std::fs::copy(checkout.join("Cargo.lock"), project.join("Cargo.lock"))
        .expect("copy Cargo.lock");
    let target = checkout.join("target/scaffold");
    let path = std::env::join_paths(
        std::iter::once(stackhook.parent().expect("bin dir").to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ),
    )
    .expect("PATH");

    // Every crate the project builds from a path is inside it: the project
    // needs nothing of the checkout, which is what makes its directory a
    // complete `docker build` context.
    // For this machine's platform only: the full graph would need the
    // crates of every platform on disk (wasm-only ones, say), which a
    // fresh machine that only built for itself has not downloaded.
    let rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let metadata = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo metadata");
    assert!(metadata.status.success(), "{}", text(&metadata));
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).expect("metadata JSON");
    let inside = project.canonicalize().expect("the project");
    let local: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["source"].is_null())
        .map(|p| p["manifest_path"].as_str().expect("manifest_path"))
        .collect();
    assert_eq!(local.len(), 4, "{local:?}");
    for manifest in local {
        assert!(
            Path::new(manifest).starts_with(&inside),
            "{manifest} is outside the project"
        );
    }

    let mut cwd = dir.path().to_path_buf();
    let mut provider: Option<Provider> = None;
    let mut ran = Vec::new();
    for step in steps {
        ran.push(step.program.clone());
        match step.program.as_str() {
            "cd" => cwd = cwd.join(&step.args[0]),
            "cargo" => {
                let mut command = Command::new(&cargo);
                command
                    .args(&step.args)
                    .envs(step.env.iter().map(|(k, v)| (k, v)))
                    .current_dir(&cwd)
                    .env("CARGO_TARGET_DIR", &target)
                    .env("CARGO_NET_OFFLINE", "true")
                    .env_remove("RUSTFLAGS");
                if step.args.first().is_some_and(|a| a == "run") {
                    // A server: it runs until the test ends.
                    provider = Some(Provider::start(command));
                    continue;
                }
                let output = command.output().expect("run cargo");
                let out = text(&output);
                assert!(
                    output.status.success(),
                    "`cargo {}` failed in the generated project:\n{out}",
                    step.args.join(" ")
                );
                if step.args.first().is_some_and(|a| a == "test") {
                    assert!(out.contains("test result: ok. 4 passed"), "{out}");
                }
            }
            "stackhook" => {
                let provider = provider.as_ref().expect("a step started the provider");
                let args: Vec<String> = step
                    .args
                    .iter()
                    .map(|a| a.replace("127.0.0.1:9000", &provider.addr))
                    .collect();
                let output = Command::new("stackhook")
                    .args(&args)
                    .envs(step.env.iter().map(|(k, v)| (k, v)))
                    .env("PATH", &path)
                    .current_dir(&cwd)
                    .output()
                    .expect("run stackhook from PATH");
                let report = String::from_utf8_lossy(&output.stdout);
                assert_eq!(output.status.code(), Some(0), "{}", text(&output));
                assert!(report.contains("Custom::DemoProvider"), "{report}");
                assert!(
                    report.contains("PASS: every ROS rule held in 6 step(s)"),
                    "{report}"
                );
            }
            other => panic!("a step runs `{other}`, which this test does not know"),
        }
    }
    assert_eq!(ran, ["cd", "cargo", "cargo", "stackhook"], "{printed}");
}

/// The generated provider started by `cargo run`, on an ephemeral loopback
/// port; killed on drop (`cargo run` replaces itself with the provider).
struct Provider {
    child: Child,
    addr: String,
}

impl Provider {
    fn start(mut command: Command) -> Provider {
        let mut child = command
            .env("PROVIDER_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the generated provider");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    let _ = tx.send(addr);
                }
            }
        });
        let mut provider = Provider {
            child,
            addr: String::new(),
        };
        provider.addr = rx
            .recv_timeout(PROVIDER_START)
            .expect("the provider logs its address");
        provider
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
