#!/usr/bin/env bash
# Compiles the TensorFlow backend (build tag "tensorflow") against the C API headers of
# TensorFlow 2.18, without libtensorflow: `go build` of a library package and `go vet` never
# link, so the headers are all they need. This proves that the backend, its tests and the
# tagged registration in cmd/pgtrain compile against graft and the TF 2.18 C API; it runs
# nothing on TensorFlow (see README, "TensorFlow backend").
#
# Needs Go and a C compiler. The headers come from the TensorFlow sources, downloaded once as
# a Go module into the module cache (about 100 MB of zip, 400 MB unpacked).
set -euo pipefail
cd "$(dirname "$0")/.."

TF_MODULE=github.com/tensorflow/tensorflow
TF_VERSION=${TF_VERSION:-v2.18.0+incompatible}
GO=${GO:-go}

cc=${CC:-$("$GO" env CC)}
if ! command -v "${cc%% *}" >/dev/null 2>&1; then
  echo "tf-check: no C compiler ($cc): cgo needs one to compile the graft binding" >&2
  exit 1
fi

# The download runs outside the module so that it cannot touch go.mod or go.sum.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && "$GO" mod download "$TF_MODULE@$TF_VERSION")
tf_dir="$("$GO" env GOMODCACHE)/$TF_MODULE@$TF_VERSION"
if [ ! -f "$tf_dir/tensorflow/c/c_api.h" ]; then
  echo "tf-check: $tf_dir/tensorflow/c/c_api.h not found after the download" >&2
  exit 1
fi

export CGO_ENABLED=1
export CGO_CFLAGS="${CGO_CFLAGS:-} -I$tf_dir -I$tf_dir/third_party/xla -I$tf_dir/third_party/xla/third_party/tsl"

# Library packages only: building cmd/pgtrain would link, and the linker needs libtensorflow.
# go vet type-checks the tagged test files and cmd/pgtrain's tagged registration too.
set -x
"$GO" build -tags tensorflow ./model/... ./trainer/...
"$GO" vet -tags tensorflow ./model/tensorflow/ ./cmd/pgtrain/
