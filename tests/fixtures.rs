//! Every file in `fixtures/` parses and round-trips; every file in
//! `fixtures/invalid/` is refused with a message that names the problem.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use stackhook::{Request, RequestType};

use common::fixtures_dir;

/// The JSON files directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// What each invalid fixture must be refused for: a text the message contains.
const INVALID: &[(&str, &str)] = &[
    ("empty-request-id.json", "`RequestId` is empty"),
    // Parses as a request, but has nowhere to send the answer: the async
    // route refuses it (checked against the server in tests/bad_input.rs).
    ("missing-callback.json", "ResponseURL"),
    ("missing-request-type.json", "missing field `RequestType`"),
    ("missing-stack-id.json", "missing field `StackId`"),
    ("not-an-object.json", "an array, not a JSON object"),
    ("not-json.json", "not valid JSON"),
    ("unknown-request-type.json", "unknown variant `Replace`"),
    ("wrong-type-properties.json", "`ResourceProperties`"),
    ("wrong-type-request-id.json", "`RequestId`"),
];

/// Why a body is refused, as the async route decides: not a request, or a
/// request with no callback URL.
fn refusal(body: &[u8]) -> Option<String> {
    match Request::from_slice(body) {
        Err(error) => Some(error.to_string()),
        Ok(request) if !request.has_callback() => {
            Some("the request has no ResponseURL or IntranetResponseURL".to_string())
        }
        Ok(_) => None,
    }
}

#[test]
fn every_valid_fixture_parses_and_round_trips() {
    let files = files_in(&fixtures_dir());
    assert!(files.len() >= 12, "too few fixtures: {files:?}");
    for path in files {
        let body = std::fs::read(&path).expect("read fixture");
        let request = Request::from_slice(&body)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let again = Request::from_slice(request.to_json().as_bytes()).unwrap_or_else(|e| {
            panic!("{} does not parse after a round trip: {e}", path.display())
        });
        assert_eq!(request, again, "{} changed in a round trip", path.display());
        assert!(request.has_callback(), "{} has no callback", path.display());
    }
}

#[test]
fn valid_fixtures_are_in_ros_format() {
    for path in files_in(&fixtures_dir()) {
        let file = name(&path);
        let value: Value = serde_json::from_slice(&std::fs::read(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let object = value.as_object().expect("an object");
        for field in [
            "RequestType",
            "RequestId",
            "ResponseURL",
            "ResourceType",
            "LogicalResourceId",
            "StackId",
            "StackName",
            "RegionId",
            "ResourceProperties",
        ] {
            assert!(object.contains_key(field), "{file} lacks {field}");
        }
        for field in ["RequestId", "StackId", "LogicalResourceId", "ResourceType"] {
            assert!(object[field].is_string(), "{file}: {field} is not a string");
        }
        if file != "account-ids-as-numbers.json" {
            for field in ["ResourceOwnerId", "CallerId"] {
                assert!(object[field].is_string(), "{file}: {field} is not a string");
            }
        }
        assert!(
            is_uuid(object["StackId"].as_str().unwrap_or_default()),
            "{file}: StackId is not a UUID"
        );
        for url in ["ResponseURL", "IntranetResponseURL", "InnerResponseURL"] {
            if let Some(url) = object.get(url) {
                let url = url.as_str().expect("URL is a string");
                assert!(
                    url.starts_with("https://") && url.contains("?") && url.contains("Signature="),
                    "{file}: {url} does not look presigned"
                );
                // Never a host that exists: a fixture sent by mistake goes nowhere.
                let host = url["https://".len()..]
                    .split(['/', '?'])
                    .next()
                    .unwrap_or("");
                assert!(host.ends_with(".invalid"), "{file}: {host} is a real host");
            }
        }
        let request = Request::from_slice(value.to_string().as_bytes()).expect("parses");
        match request.request_type {
            RequestType::Create => assert!(request.physical_resource_id.is_none(), "{file}"),
            RequestType::Update => {
                assert!(request.physical_resource_id.is_some(), "{file}");
                assert!(request.old_resource_properties.is_some(), "{file}");
            }
            RequestType::Delete => assert!(request.physical_resource_id.is_some(), "{file}"),
        }
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn the_edge_cases_are_there() {
    let read = |file: &str| {
        Request::from_slice(&common::fixture_bytes(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    assert_eq!(
        read("generic-create.json").resource_type,
        "ALIYUN::ROS::CustomResource"
    );
    let marker = read("delete-after-failed-create.json");
    assert_eq!(marker.request_type, RequestType::Delete);
    assert!(
        marker
            .physical_resource_id
            .as_deref()
            .is_some_and(|id| id.starts_with("stackhook-create-failed-"))
    );
    let inner = common::fixture("inner-response-url.json");
    assert!(inner.get("InnerResponseURL").is_some() && inner.get("IntranetResponseURL").is_none());
    assert!(
        read("inner-response-url.json")
            .intranet_response_url
            .is_some()
    );
    assert!(common::fixture("signed-request.json")["Signature"]["Value"].is_string());
    let numbers = read("account-ids-as-numbers.json");
    assert_eq!(numbers.resource_owner_id, "1234567890123456");
    assert_eq!(numbers.caller_id, "2876543210987654");
    let strings = read("numbers-as-strings.json");
    assert_eq!(strings.resource_properties["Length"], "40");

    let unchanged = read("random-string-update-unchanged.json");
    let generating = ["Length", "Upper", "Lower", "Digits", "Symbols"];
    let old = unchanged.old_resource_properties.clone().expect("old");
    for key in generating {
        assert_eq!(
            unchanged.resource_properties.get(key),
            old.get(key),
            "{key}"
        );
    }
    assert_ne!(unchanged.resource_properties, old);
    let changed = read("random-string-update-length.json");
    let old = changed.old_resource_properties.clone().expect("old");
    assert_ne!(changed.resource_properties["Length"], old["Length"]);
    assert_eq!(changed.physical_resource_id, unchanged.physical_resource_id);
}

#[test]
fn every_invalid_fixture_is_refused_naming_the_problem() {
    let dir = fixtures_dir().join("invalid");
    let files: Vec<String> = files_in(&dir).iter().map(|p| name(p)).collect();
    let listed: Vec<String> = INVALID.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        files, listed,
        "fixtures/invalid/ and the INVALID table differ"
    );
    for (file, expected) in INVALID {
        let body = std::fs::read(dir.join(file)).expect("read");
        let message = refusal(&body).unwrap_or_else(|| panic!("{file} was accepted"));
        assert!(
            message.contains(expected),
            "{file}: the message does not say `{expected}`: {message}"
        );
    }
}

#[test]
fn the_readme_lists_every_fixture() {
    let readme = std::fs::read_to_string(fixtures_dir().join("README.md")).expect("README.md");
    let mut files: Vec<String> = files_in(&fixtures_dir()).iter().map(|p| name(p)).collect();
    files.extend(
        files_in(&fixtures_dir().join("invalid"))
            .iter()
            .map(|p| format!("invalid/{}", name(p))),
    );
    for file in files {
        assert!(
            readme.contains(&format!("`{file}`")),
            "fixtures/README.md does not list `{file}`"
        );
    }
}
