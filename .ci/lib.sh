# shellcheck shell=bash
# What the scripts under .ci/ share. Each one sources it after changing to
# the repository's root: . .ci/lib.sh

# stage_dir NN prints the folder of stage NN, relative to the root
# (01-http-add for 01), or nothing if there is no such stage.
stage_dir() {
	find . -maxdepth 1 -type d -name "$1-*" | sed -n '1s|^\./||p'
}
