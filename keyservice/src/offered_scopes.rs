//! The scopes the keys page offers (`--scopes FILE`), each with a description for the person
//! choosing: `[{"name": "runs:write", "description": "Start workflow runs"}, …]`. A signed-in
//! user may grant exactly these; the admin token and API keys are not limited by the list.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keys::{MAX_SCOPES, check_text, is_scope};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferedScope {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferedScopes(Vec<OfferedScope>);

impl OfferedScopes {
    /// Reads and checks the file; `Err` names the file and the entry.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let json = std::fs::read(path)
            .map_err(|e| format!("cannot read --scopes {}: {e}", path.display()))?;
        Self::from_json(&json).map_err(|e| format!("--scopes {}: {e}", path.display()))
    }

    pub fn from_json(json: &[u8]) -> Result<Self, String> {
        let scopes: Vec<OfferedScope> = serde_json::from_slice(json)
            .map_err(|e| format!("not a list of {{\"name\": …, \"description\": …}}: {e}"))?;
        if scopes.len() > MAX_SCOPES {
            return Err(format!("at most {MAX_SCOPES} scopes"));
        }
        for (i, scope) in scopes.iter().enumerate() {
            if !is_scope(&scope.name) {
                return Err(format!(
                    "[{i}].name {:?} is not a scope: 1 to 128 printable ASCII characters, without spaces, quotes or backslashes",
                    scope.name
                ));
            }
            if scopes[..i].iter().any(|earlier| earlier.name == scope.name) {
                return Err(format!("[{i}].name {:?} is listed twice", scope.name));
            }
            check_text("description", &scope.description)
                .map_err(|e| format!("[{i}].description: {e}"))?;
        }
        Ok(Self(scopes))
    }

    pub fn list(&self) -> &[OfferedScope] {
        &self.0
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|scope| scope.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_checked_naming_the_entry() {
        let ok = OfferedScopes::from_json(
            br#"[{"name":"runs:write","description":"Start workflow runs"},{"name":"keys:write","description":"Manage API keys"}]"#,
        )
        .unwrap();
        assert_eq!(ok.names(), vec!["runs:write", "keys:write"]);
        for (json, needle) in [
            (r#"[{"name":"a b","description":"x"}]"#, "[0].name"),
            (
                r#"[{"name":"a","description":"x"},{"name":"a","description":"y"}]"#,
                "[1].name",
            ),
            (r#"[{"name":"a","description":""}]"#, "[0].description"),
            (
                r#"[{"name":"a","description":"x","extra":1}]"#,
                "unknown field",
            ),
            (r#"{"name":"a"}"#, "not a list"),
        ] {
            let error = OfferedScopes::from_json(json.as_bytes()).unwrap_err();
            assert!(error.contains(needle), "{json}: {error}");
        }
    }
}
