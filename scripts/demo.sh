#!/usr/bin/env bash
# keygate demo, against the rig that `make run` (scripts/run.sh) started:
#   1. keyservice issues a key for alice (no expiry, so the filter asks keyservice about it);
#   2. a request through Envoy with that key reaches the upstream, which sees x-user-id: alice
#      (and not the x-user-id the client tried to send);
#   3. a request without a key is refused (401);
#   4. the key is revoked;
#   5. the same request with the revoked key is refused: 401 "Revoked token", within about a
#      second (Envoy follows keyservice's revocation feed and marks the key revoked);
#   6–9. over the edge, with the keys:write key that run.sh bootstrapped with the CLI
#      ($KEYGATE_RUN_DIR/keys-write.key, or KEYS_WRITE_KEY): create a key for alice@acme, list
#      acme's keys, see the new key (no keys:write) refused on /v1/keys, and revoke it.
#
# The lines between "demo:begin" and "demo:end" are what scripts/run.sh prints for pasting into
# a shell. Needs curl and python3. Override KEYSERVICE, ENVOY or KEYSERVICE_ADMIN_TOKEN to point
# it elsewhere.
set -euo pipefail

# demo:begin
KEYSERVICE=${KEYSERVICE:-http://127.0.0.1:8081}
ENVOY=${ENVOY:-http://127.0.0.1:10000}
ADMIN_TOKEN=${KEYSERVICE_ADMIN_TOKEN:-dev-admin-token}

echo "== 1. Issue a key for alice (POST $KEYSERVICE/v1/keys)"
ISSUED=$(curl -sS --fail-with-body -X POST "$KEYSERVICE/v1/keys" \
  -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"user_id": "alice", "org_id": "acme", "name": "demo"}')
echo "$ISSUED"
KEY=$(printf '%s' "$ISSUED" | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
KEY_ID=$(printf '%s' "$ISSUED" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

echo "== 2. Call the upstream through Envoy with the key (and a forged x-user-id): 200"
curl -sS -i "$ENVOY/hello?from=demo" -H "authorization: Bearer $KEY" -H 'x-user-id: mallory'
echo

echo "== 3. The same call without a key: 401"
curl -sS -i "$ENVOY/hello?from=demo"
echo

echo "== 4. Revoke the key (DELETE $KEYSERVICE/v1/keys/$KEY_ID)"
curl -sS -i -X DELETE "$KEYSERVICE/v1/keys/$KEY_ID" -H "authorization: Bearer $ADMIN_TOKEN"
echo

echo "== 5. Call again with the revoked key: 401 Revoked token"
echo "   (Envoy learns it from keyservice's revocation feed within about a second: retry until then)"
# The answer shown is the one that was checked: Envoy's workers each learn of the revocation
# within a tick (100 ms) of the feed bringing it, so two calls in a row may meet different ones.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  ANSWER=$(curl -sS -i "$ENVOY/hello?from=demo" -H "authorization: Bearer $KEY")
  case $ANSWER in "HTTP/1.1 401"*) break ;; esac
  echo "   not refused yet ($(printf '%s' "$ANSWER" | head -n1 | tr -d '\r')), retrying in 1 s"
  sleep 1
done
printf '%s\n' "$ANSWER"
echo

# The keys:write key: run.sh's (if this keyservice knows it), else one from the admin API.
KEYS_WRITE_KEY=${KEYS_WRITE_KEY:-$(cat "${KEYGATE_RUN_DIR:-.run}/keys-write.key" 2>/dev/null || true)}
if [ -z "$KEYS_WRITE_KEY" ] || [ "$(curl -sS -o /dev/null -w '%{http_code}' \
  "$KEYSERVICE/v1/revocations/$(printf '%s' "$KEYS_WRITE_KEY" | sha256sum | cut -d' ' -f1)")" != 200 ]; then
  KEYS_WRITE_KEY=$(curl -sS --fail-with-body -X POST "$KEYSERVICE/v1/keys" \
    -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
    -d '{"user_id": "alice", "org_id": "acme", "name": "demo keys:write", "scopes": ["keys:write"]}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
fi

echo "== 6. Over the edge with the keys:write key: create a key (POST $ENVOY/v1/keys)"
CREATED=$(curl -sS --fail-with-body -X POST "$ENVOY/v1/keys" \
  -H "authorization: Bearer $KEYS_WRITE_KEY" -H 'content-type: application/json' \
  -d '{"name": "made at the edge"}')
echo "$CREATED"
NEW_KEY=$(printf '%s' "$CREATED" | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
NEW_ID=$(printf '%s' "$CREATED" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

echo "== 7. List acme's keys over the edge (GET $ENVOY/v1/keys)"
curl -sS --fail-with-body "$ENVOY/v1/keys" -H "authorization: Bearer $KEYS_WRITE_KEY"
echo

echo "== 8. The new key lacks keys:write: keyservice refuses it on /v1/keys (403)"
curl -sS -i "$ENVOY/v1/keys" -H "authorization: Bearer $NEW_KEY"
echo

echo "== 9. Revoke the new key over the edge (DELETE $ENVOY/v1/keys/$NEW_ID)"
curl -sS -i -X DELETE "$ENVOY/v1/keys/$NEW_ID" -H "authorization: Bearer $KEYS_WRITE_KEY"
echo
# demo:end
