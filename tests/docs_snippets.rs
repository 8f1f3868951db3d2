//! Every snippet in the guides under `docs/` is checked: Rust blocks are
//! compiled as doc tests (see the `docs` module in `src/lib.rs`); YAML, JSON
//! and TOML blocks are parsed here, ROS templates checked for their format
//! version and ServiceTokens, scenario files loaded, and `stackhook` command
//! lines checked against the real binary's `--help`. The scaffold's templates
//! get the same checks.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use stackhook_testing::Scenario;

mod common;
const GUIDES: &[&str] = &[
    "deploying.md",
    "templates.md",
    "writing-handlers.md",
    "testing.md",
    "security.md",
    "orchestration-clients.md",
    "../README.md",
    "performance.md",
    "builtin-handlers.md",
    "configuration.md",
    "reliability.md",
    "architecture.md",
];

struct Block {
    file: String,
    line: usize,
    lang: String,
    text: String,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn blocks(file: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(root().join("docs").join(file)).expect("read guide");
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => {
                    current = Some(Block {
                        file: file.to_string(),
                        line: index + 1,
                        lang: fence.split(',').next().unwrap_or("").trim().to_string(),
                        text: String::new(),
                    })
                }
            }
        } else if let Some(block) = current.as_mut() {
            block.text.push_str(line);
            block.text.push('\n');
        }
    }
    assert!(current.is_none(), "{file}: a code block is not closed");
    out
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .collect()
}

/// A ServiceToken in one of ROS's documented forms. `${…}` stands for a value
/// substituted by `Fn::Sub`.
fn check_token(token: &str) -> Result<(), String> {
    // `${ALIYUN::Region}` has colons of its own: stand a plain word in for it.
    let mut plain = String::new();
    let mut rest = token;
    while let Some(start) = rest.find("${") {
        plain.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or("`${` without `}`")?;
        plain.push_str("VAR");
        rest = &rest[start + end + 1..];
    }
    plain.push_str(rest);
    let token = plain.as_str();
    if let Some(rest) = token.strip_prefix("web") {
        let (options, url) = if let Some(rest) = rest.strip_prefix('[') {
            let end = rest.find("]:").ok_or("web[…] needs `]:` before the URL")?;
            (&rest[..end], &rest[end + 2..])
        } else {
            (
                "",
                rest.strip_prefix(':')
                    .ok_or("web tokens are `web:` or `web[options]:`")?,
            )
        };
        if rest.starts_with('[') {
            for option in options.split(',') {
                if !matches!(option, "sync" | "idempotent") {
                    return Err(format!("unknown web option `{option}`"));
                }
            }
        }
        if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with("VAR")) {
            return Err(format!("`{url}` is not an http(s) URL"));
        }
        if options.split(',').any(|o| o == "sync") && !url.trim_end_matches('/').ends_with("/sync")
        {
            return Err("a web[sync] token must point at stackhook's /sync route".into());
        }
        return Ok(());
    }
    let parts: Vec<&str> = token.splitn(5, ':').collect();
    match parts.as_slice() {
        ["acs", "fc", region, account, resource] if !region.is_empty() && !account.is_empty() => {
            let segments: Vec<&str> = resource.split('/').collect();
            match segments.as_slice() {
                ["functions", name] if !name.is_empty() => Ok(()),
                ["services", service, "functions", name]
                    if !service.is_empty() && !name.is_empty() =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "`{resource}` is not functions/<name> (FC 3.0) or services/<s>/functions/<f> (FC 2.0)"
                )),
            }
        }
        ["acs", "mns", _, _, resource]
            if resource.trim_start_matches('/').starts_with("queues/")
                || resource.trim_start_matches('/').starts_with("topics/") =>
        {
            Ok(())
        }
        _ => Err(format!("`{token}` is not a web, FC or MNS ServiceToken")),
    }
}

fn check_ros_template(template: &Value, at: &str) {
    assert_eq!(
        template["ROSTemplateFormatVersion"], "2015-09-01",
        "{at}: ROSTemplateFormatVersion must be '2015-09-01'"
    );
    let resources = template["Resources"]
        .as_object()
        .unwrap_or_else(|| panic!("{at}: no Resources"));
    assert!(!resources.is_empty(), "{at}: Resources is empty");
    let mut custom = 0;
    for (name, resource) in resources {
        let kind = resource["Type"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: {name} has no Type"));
        if !(kind.starts_with("Custom::") || kind == "ALIYUN::ROS::CustomResource") {
            continue;
        }
        custom += 1;
        let properties = &resource["Properties"];
        let token = match &properties["ServiceToken"] {
            Value::String(token) => token.clone(),
            Value::Object(f) if f.get("Fn::Sub").is_some_and(Value::is_string) => {
                f["Fn::Sub"].as_str().unwrap_or_default().to_string()
            }
            other => panic!("{at}: {name} has no usable ServiceToken: {other}"),
        };
        if let Err(problem) = check_token(&token) {
            panic!("{at}: {name}: {problem}");
        }
        if let Some(timeout) = properties.get("Timeout") {
            let seconds = timeout
                .as_u64()
                .unwrap_or_else(|| panic!("{at}: {name}: Timeout is not a number"));
            assert!(
                (1..=43_200).contains(&seconds),
                "{at}: {name}: Timeout {seconds} out of range"
            );
        }
        if let Some(parameters) = properties.get("Parameters") {
            assert!(
                parameters.is_object(),
                "{at}: {name}: Parameters must be a map"
            );
        }
    }
    assert!(custom > 0, "{at}: no custom resource");
    // Every Fn::GetAtt names a resource of the template.
    let text = template.to_string();
    for part in text.split("\"Fn::GetAtt\":[\"").skip(1) {
        let target = part.split('"').next().unwrap_or("");
        assert!(
            resources.contains_key(target),
            "{at}: Fn::GetAtt names unknown resource {target}"
        );
    }
}

fn check_s_yaml(doc: &Value, at: &str) {
    assert_eq!(doc["edition"], "3.0.0", "{at}: Serverless Devs edition");
    let resources = doc["resources"]
        .as_object()
        .unwrap_or_else(|| panic!("{at}: no resources"));
    for (name, resource) in resources {
        assert_eq!(
            resource["component"], "fc3",
            "{at}: {name} is not an FC 3.0 function"
        );
        let props = &resource["props"];
        let runtime = props["runtime"].as_str().unwrap_or_default();
        let port = match runtime {
            "custom-container" => &props["customContainerConfig"]["port"],
            r if r.starts_with("custom") => {
                assert!(
                    props["customRuntimeConfig"]["command"]
                        .as_array()
                        .is_some_and(|c| !c.is_empty()),
                    "{at}: {name}: customRuntimeConfig needs a command"
                );
                &props["customRuntimeConfig"]["port"]
            }
            other => panic!("{at}: {name}: runtime `{other}` is not a custom runtime"),
        };
        assert_eq!(port, 9000, "{at}: {name}: the provider listens on 9000");
        assert!(
            props["timeout"].as_u64().is_some_and(|t| t >= 60),
            "{at}: {name}: timeout"
        );
    }
}

fn check_yaml(block: &Block) {
    for doc in yaml_documents(&block.text) {
        let at = block.at();
        if doc.get("ROSTemplateFormatVersion").is_some() {
            check_ros_template(&doc, &at);
        } else if block.file == "templates.md" {
            panic!("{at}: every YAML block in templates.md must be a whole ROS template");
        } else if doc.get("steps").is_some() {
            let scenario = Scenario::from_yaml(&block.text).unwrap_or_else(|e| panic!("{at}: {e}"));
            let _ = scenario.lifecycle().unwrap_or_else(|e| panic!("{at}: {e}"));
        } else if doc.get("edition").is_some() {
            check_s_yaml(&doc, &at);
        } else if doc.get("apiVersion").is_some() {
            assert!(
                doc["kind"].is_string(),
                "{at}: a Kubernetes object needs a kind"
            );
        } else if doc
            .as_object()
            .is_some_and(|m| !m.is_empty() && m.values().all(|r| r["Type"].is_string()))
        {
            // A fragment of a template's Resources: custom resources need a valid token.
            for (name, resource) in doc.as_object().into_iter().flatten() {
                let kind = resource["Type"].as_str().unwrap_or_default();
                if kind.starts_with("Custom::") || kind == "ALIYUN::ROS::CustomResource" {
                    let token = resource["Properties"]["ServiceToken"]
                        .as_str()
                        .unwrap_or_default();
                    check_token(token).unwrap_or_else(|e| panic!("{at}: {name}: {e}"));
                }
            }
        } else {
            panic!("{at}: a YAML block of a kind this test does not check");
        }
    }
}

fn check_json(block: &Block) {
    let at = block.at();
    let value: Value = serde_json::from_str(&block.text).unwrap_or_else(|e| panic!("{at}: {e}"));
    if value.get("ROSTemplateFormatVersion").is_some() {
        check_ros_template(&value, &at);
    } else if value.get("RequestType").is_some() {
        stackhook::Request::from_slice(block.text.as_bytes())
            .unwrap_or_else(|e| panic!("{at}: {e}"));
    } else if value.get("steps").is_some() {
        Scenario::from_json(&block.text).unwrap_or_else(|e| panic!("{at}: {e}"));
    } else if value.get("Statement").is_some() {
        check_ram_policy(&value, &at);
    } else {
        panic!("{at}: a JSON block of a kind this test does not check");
    }
}

/// A RAM policy: version 1, and every `mns:` action one the SMQ consumer
/// names in its AccessDenied hint (the actions it calls), and all of those.
fn check_ram_policy(policy: &Value, at: &str) {
    assert_eq!(
        policy["Version"], "1",
        "{at}: a RAM policy is Version \"1\""
    );
    let consumer = std::fs::read_to_string(root().join("crates/smq/src/consumer/mod.rs"))
        .expect("the consumer's source");
    let mut named = Vec::new();
    for statement in policy["Statement"].as_array().expect("Statement is a list") {
        assert_eq!(statement["Effect"], "Allow", "{at}");
        for action in statement["Action"].as_array().expect("Action is a list") {
            let action = action.as_str().expect("an action is a string");
            assert!(
                consumer.contains(action),
                "{at}: the consumer does not call {action}"
            );
            named.push(action.to_owned());
        }
    }
    let hint_start = consumer.find("allow mns:").expect("the AccessDenied hint");
    let hint = &consumer[hint_start..];
    let hint = &hint[..hint.find('"').unwrap_or(hint.len())];
    for action in hint.split([' ', ',']).filter(|w| w.starts_with("mns:")) {
        assert!(
            named.iter().any(|n| n == action),
            "{at}: the policy misses {action}, which the consumer calls"
        );
    }
}

fn check_toml(block: &Block) {
    let at = block.at();
    let value: toml::Value = toml::from_str(&block.text).unwrap_or_else(|e| panic!("{at}: {e}"));
    let ours: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml"))
            .expect("ours");
    let features = ours["features"].as_table().expect("features");
    for section in ["dependencies", "dev-dependencies"] {
        if let Some(dep) = value.get(section).and_then(|s| s.get("stackhook")) {
            for feature in dep
                .get("features")
                .and_then(|f| f.as_array())
                .into_iter()
                .flatten()
            {
                let name = feature.as_str().unwrap_or_default();
                assert!(
                    features.contains_key(name),
                    "{at}: stackhook has no feature `{name}`"
                );
            }
        }
    }
}

/// `stackhook` lines: the subcommand exists and takes every flag used.
fn check_shell(block: &Block) {
    let joined = block.text.replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        // `cargo run [--release] -- ARGS` runs `stackhook ARGS` from a checkout.
        let rest = match line.strip_prefix("stackhook ") {
            Some(rest) => rest,
            None if line.starts_with("cargo run") => match line.split_once(" -- ") {
                Some((_, rest)) => rest,
                None => continue,
            },
            None => continue,
        };
        let tokens: Vec<&str> = rest.split_whitespace().collect();
        let mut command = vec![tokens[0]];
        if matches!(tokens[0], "mock-ros" | "ros" | "oos" | "rfs") {
            command.push(tokens.get(1).copied().unwrap_or(""));
        }
        let help = Command::new(common::stackhook_bin())
            .args(&command)
            .arg("--help")
            .output()
            .expect("run --help");
        assert!(
            help.status.success(),
            "{}: `stackhook {}` is not a command",
            block.at(),
            command.join(" ")
        );
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in tokens.iter().filter(|t| t.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or(flag);
            assert!(
                help.contains(flag),
                "{}: `stackhook {}` has no flag {flag}",
                block.at(),
                command.join(" ")
            );
        }
    }
}

fn check_dockerfile(block: &Block) {
    let at = block.at();
    assert!(
        block
            .text
            .lines()
            .find(|l| !l.starts_with('#') && !l.trim().is_empty())
            .is_some_and(|l| l.starts_with("FROM ")),
        "{at}: starts with FROM"
    );
    assert!(block.text.contains("EXPOSE 9000"), "{at}: exposes 9000");
    assert!(
        block.text.contains("ENTRYPOINT [\""),
        "{at}: exec-form ENTRYPOINT"
    );
}

#[test]
fn every_snippet_in_the_guides_is_checked() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("lib.rs");
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for guide in GUIDES {
        let blocks = blocks(guide);
        if blocks.iter().any(|b| b.lang.starts_with("rust")) {
            let included = lib.contains(&format!("include_str!(\"../docs/{guide}\")"))
                || guide
                    .strip_prefix("../")
                    .is_some_and(|top| lib.contains(&format!("include_str!(\"../{top}\")")));
            assert!(
                included,
                "{guide} has Rust snippets but src/lib.rs does not compile them"
            );
        }
        for block in &blocks {
            *counts.entry(block.lang.clone()).or_default() += 1;
            match block.lang.as_str() {
                "rust" => {} // compiled by `cargo test --doc`
                "yaml" => check_yaml(block),
                "json" => check_json(block),
                "toml" => check_toml(block),
                "sh" | "bash" => check_shell(block),
                "dockerfile" => check_dockerfile(block),
                "text" => {} // sample output
                other => panic!(
                    "{}: code block language `{other}` is not checked by this test",
                    block.at()
                ),
            }
        }
    }
    assert!(counts["yaml"] >= 8 && counts["rust"] >= 6, "{counts:?}");
}

#[test]
fn templates_md_covers_every_token_form() {
    let text = std::fs::read_to_string(root().join("docs/templates.md")).expect("read");
    for form in [
        "web:https://",
        "web[sync]:",
        "web[idempotent]:",
        ":functions/",
    ] {
        assert!(
            text.contains(&format!("ServiceToken: {form}"))
                || text.contains(&format!("Fn::Sub: {form}"))
                || text.contains(form),
            "{form}"
        );
    }
    let templates = blocks("templates.md")
        .into_iter()
        .filter(|b| b.lang == "yaml")
        .count();
    assert!(templates >= 4);
}

/// Commands the guides name whose flags are not stackhook's.
const OTHER_TOOLS: [&str; 4] = ["cargo ", "valgrind ", "perf ", "pg_waldump "];

#[test]
fn env_vars_and_flags_in_the_guides_exist() {
    let mut help = String::new();
    for args in [
        &["serve", "--help"][..],
        &["mock-ros", "run", "--help"],
        &["invoke", "--help"],
        &["new", "--help"],
        &["bench", "--help"],
        &["ros", "signal-resource", "--help"],
        &["ros", "stop-stack-group-operation", "--help"],
        &["ros", "signal-wait-condition", "--help"],
        &["oos", "notify-execution", "--help"],
        &["rfs", "list-execution-plans", "--help"],
        &["rfs", "continue-rollback", "--help"],
        &["rfs", "update-stack", "--help"],
        &["mock-api", "--help"],
    ] {
        let out = Command::new(common::stackhook_bin())
            .args(args)
            .output()
            .expect("help");
        help.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    // The test cluster's variables, exported by .ci/postgres.sh, are not
    // options of the binary.
    let test_cluster = std::fs::read_to_string(root().join(".ci/postgres.sh")).expect("read");
    for guide in GUIDES {
        let text = std::fs::read_to_string(root().join("docs").join(guide)).expect("read");
        for part in text.split("STACKHOOK_").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let known = if name.starts_with("TEST_") {
                test_cluster.contains(&format!("export STACKHOOK_{name}"))
            } else {
                help.contains(&format!("STACKHOOK_{name}"))
            };
            assert!(known, "{guide}: STACKHOOK_{name} is not an option");
        }
        // Flags named in the prose, in `code spans`, outside code blocks.
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if fenced {
                continue;
            }
            // Spans that are other tools' commands carry their flags, not
            // stackhook's.
            for span in line
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|span| !OTHER_TOOLS.iter().any(|tool| span.starts_with(tool)))
            {
                for flag in span.split_whitespace().filter(|t| t.starts_with("--")) {
                    let flag = flag.split(['=', '|']).next().unwrap_or(flag);
                    assert!(
                        help.contains(flag),
                        "{guide}: `{flag}` is not a flag of stackhook"
                    );
                }
            }
        }
    }
}

#[test]
fn scaffold_templates_pass_the_same_checks() {
    // As `stackhook new` writes them, with a checkout and with a git source.
    for source in [
        &[][..],
        &["--stackhook-git", "https://git.example/stackhook"][..],
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("demo-provider");
        let output = Command::new(common::stackhook_bin())
            .args(["new", "demo-provider", "--path"])
            .arg(&project)
            .args(source)
            .output()
            .expect("run stackhook new");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let block = |file: &str, lang: &str| Block {
            file: format!("stackhook new {source:?}: {file}"),
            line: 1,
            lang: lang.into(),
            text: std::fs::read_to_string(project.join(file)).expect("generated file"),
        };
        check_yaml(&block("template.yaml", "yaml"));
        check_yaml(&block("s.yaml", "yaml"));
        check_yaml(&block("scenario.yaml", "yaml"));
        check_dockerfile(&block("Dockerfile", "dockerfile"));
        check_toml(&block("Cargo.toml", "toml"));
        check_shell(&block("README.md", "sh"));
    }
}

#[test]
fn shipped_scenarios_load() {
    for entry in std::fs::read_dir(root().join("fixtures/scenarios")).expect("fixtures/scenarios") {
        let path = entry.expect("entry").path();
        let scenario =
            Scenario::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let _ = scenario
            .lifecycle()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn token_forms() {
    for good in [
        "web:https://example.com/",
        "web[sync]:http://example.com/sync",
        "web[sync,idempotent]:https://example.com/sync",
        "web[idempotent]:https://example.com",
        "acs:fc:cn-hangzhou:123:functions/f",
        "acs:fc:cn-hangzhou:123:services/s/functions/f",
        "acs:mns:cn-hangzhou:123:queues/q",
        "acs:fc:${ALIYUN::Region}:${ALIYUN::TenantId}:functions/${Name}",
    ] {
        assert!(check_token(good).is_ok(), "{good}: {:?}", check_token(good));
    }
    for bad in [
        "web[fast]:https://example.com",
        "web:ftp://example.com",
        "web[sync]:https://example.com/",
        "acs:fc:cn-hangzhou:123:function/f",
        "https://example.com",
    ] {
        assert!(check_token(bad).is_err(), "{bad}");
    }
}
