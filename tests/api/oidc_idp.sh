#!/bin/bash
# oidc_idp.sh - a real OpenID provider for the OIDC tests: Debian's
# glewlwyd on 127.0.0.1 with SQLite, configured through its admin REST API.
#   oidc_idp.sh start DIR PORT      keys, database, config; starts it; sets up
#                                   the OIDC plugin (RS256, PKCE S256), a
#                                   "groups" user property and claim, users
#   oidc_idp.sh client DIR ID SECRET REDIRECT_URI   a confidential client
#   oidc_idp.sh rotate DIR          new RS256 signing key (old one removed)
#   oidc_idp.sh stop DIR
# Exit 77 when glewlwyd is not installed (the test then skips).
set -euo pipefail
cmd=$1 D=$2
B() { echo "http://127.0.0.1:$(cat "$D/port")/api"; }
admin() { # METHOD PATH [JSON]
  local m=$1 p=$2
  shift 2
  curl -sS -o "$D/last.out" -w '%{http_code}' -b "$D/admin.cookies" -X "$m" \
    -H 'Content-Type: application/json' "$@" "$(B)$p"
}
expect2xx() { # CODE WHAT
  case "$1" in 2??) ;; *) echo "oidc_idp: $2 -> HTTP $1: $(cat "$D/last.out")" >&2; exit 1 ;; esac
}
newkey() { # NAME
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$D/$1.pem" 2>/dev/null
  openssl pkey -in "$D/$1.pem" -pubout -out "$D/$1.pub.pem"
}
plugin_json() { # KEYNAME
  local key pub
  key=$(jq -Rs . <"$D/$1.pem")
  pub=$(jq -Rs . <"$D/$1.pub.pem")
  cat <<JSON
{"module":"oidc","name":"oidc","display_name":"OIDC","enabled":true,"parameters":{
 "iss":"$(B)/oidc","jwt-type":"rsa","jwt-key-size":"256","key":$key,"cert":$pub,
 "jwks-show":true,"jwks-x5c":[],
 "access-token-duration":300,"refresh-token-duration":3600,"code-duration":600,
 "refresh-token-rolling":true,"allow-non-oidc":false,
 "auth-type-code-enabled":true,"auth-type-token-enabled":false,
 "auth-type-id-token-enabled":true,"auth-type-none-enabled":false,
 "auth-type-password-enabled":true,"auth-type-client-enabled":true,
 "auth-type-refresh-enabled":true,"auth-type-device-enabled":false,
 "subject-type":"public","allowed-scope":["openid","profile","email"],
 "name-claim":"on-demand","email-claim":"mandatory","scope-claim":"no",
 "claims":[{"name":"groups","user-property":"groups","type":"string",
   "mandatory":true,"on-demand":false,"scope":[]}],
 "pkce-allowed":true,"pkce-method-plain-allowed":false,
 "introspection-revocation-allowed":false,"request-parameter-allow":false}}
JSON
}
case "$cmd" in
start)
  P=$3
  command -v glewlwyd >/dev/null || { echo "glewlwyd not installed" >&2; exit 77; }
  mkdir -p "$D"
  echo "$P" >"$D/port"
  newkey key1
  sed 's/"data-format":{"picture"/"data-format":{"groups":{"multiple":true,"read":true,"write":true,"profile-read":false,"profile-write":false},"picture"/' \
    /usr/share/dbconfig-common/data/glewlwyd/install/sqlite3 >"$D/schema.sql"
  python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(open(sys.argv[2]).read()); c.commit()' \
    "$D/glewlwyd.db" "$D/schema.sql"
  cat >"$D/glewlwyd.conf" <<CONF
port=$P
bind_address="127.0.0.1"
external_url="http://127.0.0.1:$P"
login_url="login.html"
static_files_path="/usr/share/glewlwyd/webapp/"
static_files_prefix="static"
api_prefix="api"
allow_origin="*"
log_mode="file"
log_level="INFO"
log_file="$D/glewlwyd.log"
cookie_secure=0
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="/usr/lib/glewlwyd/user"
client_module_path="/usr/lib/glewlwyd/client"
user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"
plugin_module_path="/usr/lib/glewlwyd/plugin"
hash_algorithm = "SHA512"
database = { type = "sqlite3" path = "$D/glewlwyd.db" };
static_files_mime_types = ( { extension = ".html" mime_type = "text/html" } )
CONF
  setsid glewlwyd --config-file="$D/glewlwyd.conf" </dev/null >"$D/stdout.log" 2>&1 &
  echo $! >"$D/pid"
  for _ in $(seq 100); do
    curl -s -o /dev/null "$(B)/" && break
    kill -0 "$(cat "$D/pid")" 2>/dev/null || { echo "glewlwyd died:" >&2; tail -20 "$D/glewlwyd.log" "$D/stdout.log" >&2; exit 1; }
    sleep 0.1
  done
  code=$(curl -sS -o "$D/last.out" -w '%{http_code}' -c "$D/admin.cookies" -H 'Content-Type: application/json' \
    -d '{"username":"admin","password":"password"}' "$(B)/auth/")
  expect2xx "$code" "admin login"
  plugin_json key1 >"$D/plugin.json"
  expect2xx "$(admin POST /mod/plugin/ -d @"$D/plugin.json")" "oidc plugin"
  for s in profile email; do
    expect2xx "$(admin POST /scope/ -d "{\"name\":\"$s\",\"display_name\":\"$s\",\"password_required\":false}")" "scope $s"
  done
  for u in alice:sbx-analysts bob:sbx-admins carol:nobody; do
    n=${u%%:*} g=${u#*:}
    expect2xx "$(admin POST /user/ -d "{\"username\":\"$n\",\"name\":\"$n\",\"email\":\"$n@idp.example\",\"password\":\"${n}-password\",\"enabled\":true,\"scope\":[\"openid\",\"profile\",\"email\"],\"groups\":[\"staff\",\"$g\"]}")" "user $n"
  done
  ;;
client)
  ID=$3 SECRET=$4 RU=$5
  expect2xx "$(admin POST /client/ -d "{\"client_id\":\"$ID\",\"name\":\"$ID\",\"confidential\":true,\"password\":\"$SECRET\",\"enabled\":true,\"redirect_uri\":[\"$RU\"],\"authorization_type\":[\"code\",\"password\",\"refresh_token\"],\"token_endpoint_auth_method\":[\"client_secret_basic\",\"client_secret_post\"],\"scope\":[\"openid\",\"profile\",\"email\"]}")" "client $ID"
  ;;
rotate)
  newkey key2
  plugin_json key2 >"$D/plugin.json"
  expect2xx "$(admin PUT /mod/plugin/oidc -d @"$D/plugin.json")" "plugin update"
  expect2xx "$(admin PUT /mod/plugin/oidc/reset)" "plugin reset"
  ;;
stop)
  if [ -f "$D/pid" ]; then
    kill "$(cat "$D/pid")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$D/pid")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$D/pid")" 2>/dev/null || true
  fi
  ;;
*) echo "usage: $0 start|client|rotate|stop DIR ..." >&2; exit 2 ;;
esac
