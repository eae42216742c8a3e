//! Listing keys.

use axum::http::StatusCode;
use serde_json::json;
use testkit::token::sha256_hex;

use crate::common::{Backend, Harness, record};

async fn list_shows_keys_without_material_oldest_first(backend: Backend) {
    let h = Harness::new(backend).await;
    // Inserted out of order with fixed times, so only ORDER BY can put them right.
    for (id, user, at) in [("c", "alice", 300), ("a", "alice", 100), ("b", "bob", 200)] {
        h.store.insert(&record(id, user, at)).await.unwrap();
    }
    let issued = h.create(json!({"user_id": "alice", "name": "fresh"})).await;
    let key = issued.json["key"].as_str().unwrap();

    let r = h.admin("GET", "/v1/keys", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains(key));
    assert!(!r.text.contains(&sha256_hex(key)));
    let keys = r.json["keys"].as_array().unwrap();
    let ids: Vec<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(&ids[..3], ["a", "b", "c"]);
    assert_eq!(ids.len(), 4);
    assert_eq!(
        keys[0],
        json!({
            "id": "a", "name": "key a", "user_id": "alice", "org_id": null, "scopes": [],
            "rate_limits": [], "created_at": "1970-01-01T00:01:40Z", "expires_at": null,
            "revoked_at": null, "last_used_at": null, "hint": null
        })
    );
    let fresh = keys.iter().find(|k| k["name"] == "fresh").unwrap();
    assert_eq!(fresh["hint"], key[key.len() - 4..]);

    let r = h.admin("GET", "/v1/keys?user_id=alice", None).await;
    let ids: Vec<&str> = r.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(&ids[..2], ["a", "c"]);

    let r = h.admin("GET", "/v1/keys?user_id=nobody", None).await;
    assert_eq!(r.json, json!({"keys": [], "next": null}));

    let r = h.admin("GET", "/v1/keys?userid=alice", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_query");
}

both_backends!(list_shows_keys_without_material_oldest_first,);
