#!/usr/bin/env bash
# cache_data: on a bake's builder (`ec2dbn bake`), fetch the data sets the bundled jobs use into the trainer's
# cache (~/.cache/ec2dbn/datasets), so a job on an instance of the image reads them from the disk instead of
# downloading them. Not a step a stack lists. A data set that cannot be fetched is reported, not fatal: a job
# that needs it downloads it when it runs.
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_VENV, EC2DBN_PYTHON; see _lib.sh. Also:
#   EC2DBN_CACHE_DATA  the data set names, space-separated (e.g. "mnist fashion-mnist mnist-5k")
# Runs the trainer shipped to $EC2DBN_REMOTE_DIR/bake/trainer (image_prepare removes it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

VPY="$VENV/bin/python"
[ -x "$VPY" ] || VPY="$PY"
read -r -a names <<<"${EC2DBN_CACHE_DATA:-}"
if [ ${#names[@]} -eq 0 ]; then
  log "no data sets to cache"
  exit 0
fi
cd "$EC2DBN_REMOTE_DIR/bake"
"$VPY" -m trainer.warm "${names[@]}"
