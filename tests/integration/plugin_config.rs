//! A wrong plugin configuration is refused when Envoy starts (not at the first request), and
//! Envoy's log says which field is wrong.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Rig, default_plugin_config};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut config = default_plugin_config();
    change(&mut config);
    config
}

#[test]
fn invalid_plugin_configs_are_refused_by_envoy() {
    struct Case {
        name: &'static str,
        config: Value,
        envoy_secret: Option<&'static str>,
        /// The log must contain this (the field at fault).
        names: &'static str,
    }
    let case = |name, config, names| Case {
        name,
        config,
        envoy_secret: Some(crate::support::SECRET),
        names,
    };
    let cases = [
        case(
            "unknown top-level field",
            with(|c| c["bogus_field"] = json!(true)),
            "bogus_field",
        ),
        case(
            "unknown field in revocation",
            with(|c| c["revocation"]["retries"] = json!(3)),
            "retries",
        ),
        case(
            "unknown algorithm",
            with(|c| c["algorithms"] = json!(["HS256", "HS1024"])),
            "algorithms",
        ),
        case(
            "revocation.timeout_ms = 0",
            with(|c| c["revocation"]["timeout_ms"] = json!(0)),
            "revocation.timeout_ms",
        ),
        case(
            "revocation missing",
            with(|c| {
                c.as_object_mut().map(|c| c.remove("revocation"));
            }),
            "revocation",
        ),
        case(
            "revocation.cluster missing",
            with(|c| {
                c["revocation"].as_object_mut().map(|r| r.remove("cluster"));
            }),
            "cluster",
        ),
        case(
            "unknown revocation.failure_mode",
            with(|c| c["revocation"]["failure_mode"] = json!("maybe")),
            "failure_mode",
        ),
        Case {
            name: "secret from env, JWT_SECRET unset in Envoy's environment",
            config: default_plugin_config(),
            envoy_secret: None,
            names: "JWT_SECRET",
        },
    ];

    let mut failures = Vec::new();
    for case in cases {
        let refusal = Rig::builder()
            .plugin_config(&case.config)
            .envoy_secret(case.envoy_secret)
            .start_expecting_refusal(EXIT_TIMEOUT);
        let problem = match refusal.status {
            None => Some(format!(
                "Envoy was still running after {EXIT_TIMEOUT:?}: the configuration was accepted"
            )),
            Some(status) if status.success() => Some(format!("Envoy exited with {status}")),
            Some(_) if !refusal.log.contains(case.names) => {
                Some(format!("Envoy's log does not name {:?}", case.names))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "case '{}': {problem}\nconfig: {}\n{}",
                case.name, case.config, refusal.tail
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn plugin_config_that_is_not_json_is_refused() {
    let refusal = Rig::builder()
        .plugin_config_text("secret: JWT_SECRET")
        .start_expecting_refusal(EXIT_TIMEOUT);
    match refusal.status {
        Some(status) if !status.success() => {}
        status => panic!(
            "expected Envoy to exit non-zero, got {status:?}\n{}",
            refusal.tail
        ),
    }
}
