# Sourced by the scripts: where Enclave's caches live (outside the clone) and the tools it needs.
# ENCLAVE_CACHE: models, corpus and the cargo target directory (default ~/.cache/enclave).
ENCLAVE_CACHE=${ENCLAVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/enclave}
export ENCLAVE_MODELS_DIR=${ENCLAVE_MODELS_DIR:-$ENCLAVE_CACHE/models}
export ENCLAVE_CORPUS_DIR=${ENCLAVE_CORPUS_DIR:-$ENCLAVE_CACHE/corpus}
# One target directory outside the clone, so that every clone builds incrementally.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ENCLAVE_CACHE/target}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ENCLAVE_MODELS_DIR/onnxruntime/libonnxruntime.so}
export HF_HUB_OFFLINE=1

# need_packages PKG...: installs missing Debian packages (as root) or says what to install.
need_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${missing[*]}" >&2
    { apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }; } >/dev/null
  else
    echo "please install: sudo apt-get install ${missing[*]}" >&2
    return 1
  fi
}

# ensure_postgres: starts the local PostgreSQL cluster if it is installed but not running.
ensure_postgres() {
  command -v pg_isready >/dev/null || { echo "PostgreSQL client tools not found" >&2; return 1; }
  pg_isready -q -h 127.0.0.1 -p 5432 && return 0
  local v
  v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$v" ] || { echo "no PostgreSQL cluster on this machine" >&2; return 1; }
  pg_ctlcluster --skip-systemctl-redirect "$v" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
  echo "PostgreSQL did not start" >&2
  return 1
}

# fetch_corpus: the Debian documentation corpus (real PDFs and texts), cached.
fetch_corpus() {
  if [ -n "$(ls -A "$ENCLAVE_CORPUS_DIR" 2>/dev/null)" ]; then return 0; fi
  local here fetch
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  fetch=${ENCLAVE_CORPUS_FETCH:-$here/../shared/corpus/fetch-debian-pdfs}
  [ -x "$fetch" ] || { echo "corpus fetcher not found at $fetch (set ENCLAVE_CORPUS_FETCH)" >&2; return 1; }
  "$fetch" "$ENCLAVE_CORPUS_DIR" >&2
}

# fetch_outlook_samples: real Outlook .msg files (sent from Outlook.com, ProtonMail and NetApp's
# Exchange; messages attached as files and as items, TIFF and Word attachments) as the msg_parser
# crate publishes them on crates.io for its own tests, checked against their checksum, in $ENCLAVE_OUTLOOK_DIR.
export ENCLAVE_OUTLOOK_DIR=${ENCLAVE_OUTLOOK_DIR:-$ENCLAVE_CACHE/outlook}
fetch_outlook_samples() {
  [ -s "$ENCLAVE_OUTLOOK_DIR/unicode.msg" ] && return 0
  local tmp sum=5a0453ec98f292962f9972032a09211daaf7482dfbcaed7f9dfa12f0f6a750fb
  tmp=$(mktemp -d)
  curl -fsSL -o "$tmp/msg_parser.crate" https://static.crates.io/crates/msg_parser/msg_parser-0.3.6.crate \
    || { echo "could not download the Outlook samples from crates.io" >&2; rm -rf "$tmp"; return 1; }
  echo "$sum  $tmp/msg_parser.crate" | sha256sum -c --quiet - \
    || { echo "Outlook samples: checksum mismatch" >&2; rm -rf "$tmp"; return 1; }
  mkdir -p "$ENCLAVE_OUTLOOK_DIR"
  tar -xzf "$tmp/msg_parser.crate" -C "$tmp" msg_parser-0.3.6/data
  cp "$tmp"/msg_parser-0.3.6/data/*.msg "$ENCLAVE_OUTLOOK_DIR/"
  rm -rf "$tmp"
}

# setup_test_clients: what the HTTP tests drive the server with: the official `openai` Python
# client (a virtualenv in the cache) and playwright-core for Debian's Chromium (npm, pinned by
# tests/browser/package-lock.json).
setup_test_clients() {
  local here venv
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv=$ENCLAVE_CACHE/venv
  if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
  if ! cmp -s "$here/tests/python/requirements.txt" "$venv/requirements.txt"; then
    "$venv/bin/pip" install -q -r "$here/tests/python/requirements.txt" >&2
    cp "$here/tests/python/requirements.txt" "$venv/requirements.txt"
  fi
  if ! cmp -s "$here/tests/browser/package-lock.json" "$here/tests/browser/node_modules/.enclave-lock"; then
    (cd "$here/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >&2 \
      && cp package-lock.json node_modules/.enclave-lock)
  fi
}

# The Qdrant server the tests and benches start (a binary and its `start` script):
# $ENCLAVE_QDRANT_DIR, by default shared/qdrant beside the clone.
ENCLAVE_QDRANT_DIR=${ENCLAVE_QDRANT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/qdrant}
export ENCLAVE_QDRANT_DIR

# free_port: a TCP port nothing listens on.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_qdrant DIR: a standalone Qdrant node with its data in DIR, on free loopback ports
# (sets QDRANT_HTTP_PORT and QDRANT_GRPC_PORT).
start_qdrant() {
  [ -x "$ENCLAVE_QDRANT_DIR/start" ] || {
    echo "no Qdrant server in $ENCLAVE_QDRANT_DIR (set ENCLAVE_QDRANT_DIR to a folder with the qdrant binary and its start script)" >&2
    return 1
  }
  QDRANT_HTTP_PORT=$(free_port)
  QDRANT_GRPC_PORT=$(free_port)
  "$ENCLAVE_QDRANT_DIR/start" "$1" "$QDRANT_HTTP_PORT" "$QDRANT_GRPC_PORT" >&2
}

# stop_qdrant DIR: stops the node started with that DIR.
stop_qdrant() {
  [ -f "$1/pid" ] && kill "$(cat "$1/pid")" 2>/dev/null || true
}
