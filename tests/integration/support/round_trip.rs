//! JSON read as a typed value and written back (Kubernetes objects through k8s-openapi's types):
//! what the type drops or changes on the way is what it does not know.

use std::collections::BTreeSet;

use serde_json::Value;

/// The paths where `object` read as `T` and written back differs from `object`: an unknown or
/// misspelt field is dropped on the way; `Err` when it is not a `T` at all (a wrong type).
pub fn round_trip_losses<T>(object: &Value) -> Result<Vec<String>, String>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(object.clone()).map_err(|err| err.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|err| err.to_string())?;
    let mut out = Vec::new();
    differences(object, &back, "", &mut out);
    Ok(out)
}

/// Where JSON `a` and `b` differ, as paths.
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                let sub = format!("{path}.{key}");
                match (x.get(key), y.get(key)) {
                    (Some(x), Some(y)) => differences(x, y, &sub, out),
                    _ => out.push(sub),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (index, (x, y)) in x.iter().zip(y).enumerate() {
                differences(x, y, &format!("{path}.{index}"), out);
            }
        }
        _ if a != b => out.push(path.to_owned()),
        _ => {}
    }
}
